"""Checkpoints: atomic, loadable after a SIGKILL, and resuming gives the uninterrupted result."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import nncore as nc
from nncore import modelfile

DATA_SEED, EPOCHS, BATCH = 3, 400, 16


def _same_history(a, b):
    """Every column but the wall-clock seconds is equal (NaN matching NaN)."""
    return all(np.array_equal(a[c], b[c], equal_nan=True)
               for c in nc.History.COLUMNS if c != "seconds")


def _data():
    X, y, _, _ = nc.datasets.make_gmm(n_train=800, n_val=100, seed=DATA_SEED)
    return X, y


def _train(epochs=EPOCHS, **kwargs):
    X, y = _data()
    net = nc.mlp(5, [16, 16], 5, dtype="float64", seed=1)
    opt = nc.SGD(lr=0.05, momentum=0.9, schedule="cosine")
    history = net.fit(X, y, epochs=epochs, batch_size=BATCH, optimizer=opt, seed=2, verbose=0,
                      **kwargs)
    return net, history


class _InterruptAfter(nc.Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, network, epoch, logs):
        if epoch == self.epoch:
            raise KeyboardInterrupt
        return False


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    reference, reference_history = _train()
    _, history = _train(checkpoint=tmp_path, callbacks=[_InterruptAfter(9)])
    assert history.interrupted and len(history) == 10
    resumed, resumed_history = _train(checkpoint=tmp_path)
    assert np.array_equal(resumed.params, reference.params)
    assert _same_history(resumed_history, reference_history)


def test_checkpoint_every_n_epochs_and_after_the_last(tmp_path):
    _train(epochs=7, checkpoint=tmp_path, checkpoint_every=3)
    _, velocity, state = modelfile.load_checkpoint(tmp_path / modelfile.CHECKPOINT_FILE)
    assert state["epochs_done"] == 7
    assert len(state["history"]["loss"]) == 7
    assert sorted(os.listdir(tmp_path)) == [modelfile.CHECKPOINT_FILE]  # no temporary files left


def test_a_checkpoint_of_another_run_is_refused(tmp_path):
    _train(epochs=2, checkpoint=tmp_path)
    X, y = _data()
    net = nc.mlp(5, [16, 16], 5, dtype="float64", seed=1)
    with pytest.raises(ValueError, match="batch_size"):
        net.fit(X, y, epochs=4, batch_size=32, optimizer=nc.SGD(lr=0.05, momentum=0.9,
                                                                schedule="cosine"),
                seed=2, verbose=0, checkpoint=tmp_path)
    other = nc.mlp(5, [8], 5, dtype="float64")
    with pytest.raises(ValueError, match="different network"):
        other.fit(X, y, epochs=4, batch_size=BATCH, optimizer=nc.SGD(lr=0.05, momentum=0.9,
                                                                     schedule="cosine"),
                  seed=2, verbose=0, checkpoint=tmp_path)


def test_a_model_file_is_not_a_checkpoint_and_vice_versa(tmp_path):
    net, _ = _train(epochs=1, checkpoint=tmp_path)
    net.save(tmp_path / "model.npz")
    with pytest.raises(modelfile.ModelFileError, match="not an nncore checkpoint"):
        modelfile.load_checkpoint(tmp_path / "model.npz")
    with pytest.raises(modelfile.ModelFileError, match="not an nncore model file"):
        nc.load(tmp_path / modelfile.CHECKPOINT_FILE)


def test_truncated_checkpoint_is_refused(tmp_path):
    _train(epochs=1, checkpoint=tmp_path)
    path = tmp_path / modelfile.CHECKPOINT_FILE
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(modelfile.ModelFileError):
        modelfile.load_checkpoint(path)


CHILD = textwrap.dedent("""
    import sys
    sys.path[:0] = {path!r}
    from test_checkpoint import _train
    _train(checkpoint={folder!r})
""")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")
def test_sigkill_leaves_a_loadable_checkpoint_and_resume_matches(tmp_path):
    folder = tmp_path / "ckpt"
    code = CHILD.format(path=[os.path.dirname(__file__), *sys.path], folder=str(folder))
    child = subprocess.Popen([sys.executable, "-c", code])
    path = folder / modelfile.CHECKPOINT_FILE
    deadline = time.monotonic() + 60
    while not path.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.03)  # let it run on, somewhere in later epochs or in a checkpoint write
    child.send_signal(signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL, "the child ended before it could be killed"
    assert path.exists(), "the child never wrote a checkpoint"
    network_state, _, state = modelfile.load_checkpoint(path)
    assert 1 <= state["epochs_done"] < EPOCHS
    json.dumps({**network_state, "params": None, "state": state})  # the header is plain JSON
    resumed, history = _train(checkpoint=folder)
    reference, reference_history = _train()
    assert np.array_equal(resumed.params, reference.params)
    assert _same_history(history, reference_history)
