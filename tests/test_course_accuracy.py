"""The quality bar of `nncore train`'s documented defaults on the real course files.

The files live in ``shared/data/course/`` beside the repository and are never copied into
it; without them these tests skip. Each run trains for about 2 s.
"""

import pytest

import nncore as nc
from nncore.cli import TRAIN_DEFAULTS
from conftest import COURSE_DIR, needs_course_files

#: validation accuracy each default run must reach (a 25-NN classifier: 93.0, 97.4, 97.4)
BARS = {"PeaksData": 0.925, "GMMData": 0.970, "SwissRollData": 0.970}


@needs_course_files
@pytest.mark.parametrize("name", list(BARS))
def test_default_resnet_reaches_the_bar(name):
    X, y, X_val, y_val = nc.datasets.load_mat(COURSE_DIR / f"{name}.mat")
    d = TRAIN_DEFAULTS
    net = nc.resnet(X.shape[1], d["width"], d["depth"], int(y.max()) + 1,
                    activation=d["activation"], dtype=d["dtype"], seed=d["seed"])
    optimizer = nc.SGD(lr=d["lr"], momentum=d["momentum"], schedule=d["schedule"])
    net.fit(X, y, epochs=d["epochs"], batch_size=d["batch_size"], optimizer=optimizer,
            seed=d["seed"], verbose=0)
    assert net.evaluate(X_val, y_val)["accuracy"] >= BARS[name]
