"""Bad arguments to `nncore train` are one line on stderr and exit status 2, with nothing
written outside --out; the Python API refuses the same numbers with ValueError."""

import os

import numpy as np
import pytest

import nncore as nc
from nncore import _validation as v
from nncore import cli, ops, reference


def run(argv, capsys):
    """Run the command; return (status, stderr). argparse's errors exit via SystemExit."""
    try:
        status = cli.main(argv)
    except SystemExit as exit_:
        status = exit_.code
    return status, capsys.readouterr().err


def assert_one_line(err, message):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert message in lines[0] and "Traceback" not in err


def tree(folder):
    return sorted(os.path.relpath(os.path.join(root, name), folder)
                  for root, dirs, files in os.walk(folder) for name in dirs + files)


@pytest.mark.parametrize("extra, message", [
    (["--momentum", "2"], "argument --momentum: must be a number in [0, 1), got 2"),
    (["--momentum", "1"], "argument --momentum: must be a number in [0, 1), got 1"),
    (["--momentum", "-0.5"], "argument --momentum: must be a number in [0, 1), got -0.5"),
    (["--momentum", "nan"], "argument --momentum: must be a number in [0, 1), got nan"),
    (["--epochs", "0"], "argument --epochs: must be a positive integer, got 0"),
    (["--epochs", "-3"], "argument --epochs: must be a positive integer, got -3"),
    (["--name", "../escape"], "--name must be a plain folder name inside --out"),
    (["--name", ".."], "--name must be a plain folder name inside --out"),
    (["--name", "."], "--name must be a plain folder name inside --out"),
    (["--name", "a/b"], "--name must be a plain folder name inside --out"),
    (["--name", ""], "--name must be a plain folder name inside --out"),
    (["--hidden", "8"], "--hidden is for --arch resnet, not mlp"),
    (["--depth", "2"], "--depth cannot go with --layers, which gives every hidden width"),
    (["--arch", "resnet", "--layers", "3,2"], "--layers is for --arch mlp, not resnet"),
    (["--arch", "softmax_regression"], "--layers is for --arch mlp, not softmax_regression"),
])
def test_bad_train_arguments_are_one_line_exit_2_and_write_nothing(extra, message, tmp_path,
                                                                   capsys):
    work = tmp_path / "work"
    work.mkdir()
    out = work / "out"
    status, err = run(["train", "--data", "gmm", "--arch", "mlp", "--layers", "4",
                       "--epochs", "1", "--verbose", "0", "--no-plots", "--out", str(out),
                       *extra], capsys)
    assert status == 2
    assert_one_line(err, message)
    assert tree(tmp_path) == ["work"]  # no run folder, in --out or beside it


def test_out_naming_an_existing_file_is_refused(tmp_path, capsys):
    path = tmp_path / "taken"
    path.write_text("not a folder")
    status, err = run(["train", "--out", str(path), "--epochs", "1"], capsys)
    assert status == 2
    assert_one_line(err, f"--out {str(path)!r} exists and is not a folder")
    assert path.read_text() == "not a folder"


def test_out_below_a_file_is_refused(tmp_path, capsys):
    path = tmp_path / "taken"
    path.write_text("")
    status, err = run(["train", "--data", "gmm", "--arch", "mlp", "--layers", "4",
                       "--epochs", "1", "--verbose", "0", "--no-plots",
                       "--out", str(path / "below"), "--name", "r"], capsys)
    assert status == 2
    assert_one_line(err, "cannot create the run folder")


def test_name_naming_an_existing_file_is_refused(tmp_path, capsys):
    (tmp_path / "run").write_text("")
    status, err = run(["train", "--data", "gmm", "--arch", "mlp", "--layers", "4",
                       "--epochs", "1", "--verbose", "0", "--no-plots",
                       "--out", str(tmp_path), "--name", "run"], capsys)
    assert status == 2
    assert_one_line(err, "exists and is not a folder: choose another --name")


def test_a_directory_as_data_says_it_is_a_directory(tmp_path, capsys):
    folder = tmp_path / "data.csv"  # a folder, whatever its name says
    folder.mkdir()
    for data in (folder, tmp_path):
        status, err = run(["train", "--data", str(data), "--out", str(tmp_path / "out")],
                          capsys)
        assert status == 2
        assert_one_line(err, f"{str(data)!r} is a directory, not a data file")
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="is a directory"):
        nc.datasets.load(tmp_path)


def test_a_good_name_still_trains_inside_out(tmp_path, capsys):
    status, _ = run(["train", "--data", "gmm", "--arch", "mlp", "--layers", "4",
                     "--epochs", "1", "--verbose", "0", "--no-plots", "--momentum", "0",
                     "--out", str(tmp_path / "out"), "--name", "..ok"], capsys)
    assert status == 0
    assert tree(tmp_path / "out") == ["..ok", *(os.path.join("..ok", name) for name in (
        "checkpoint.npz", "history.csv", "model.npz", "run.json"))]


def test_a_warning_reaches_the_user_as_one_line(tmp_path, capsys):
    """A user trial trained on 19 rows with the default batch of 64: Python printed the
    UserWarning with network.py's path and source line. The CLI prints it as one line."""
    rows = ["a,b,label"] + [f"{i},{i % 3},c{i % 2}" for i in range(19)]
    (tmp_path / "tiny.csv").write_text("\n".join(rows) + "\n")
    status = cli.main(["train", "--data", str(tmp_path / "tiny.csv"), "--epochs", "1",
                       "--verbose", "0", "--no-plots", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == 0
    assert "nncore train: warning: batch_size (64) is larger than the training set" in err
    assert "UserWarning" not in err and "network.py" not in err


@pytest.mark.parametrize("momentum, message", [
    (1.5, "momentum must be < 1.0, got 1.5"),
    (1, "momentum must be < 1.0, got 1.0"),
    (-0.1, "momentum must be >= 0.0, got -0.1"),
])
def test_sgd_momentum_is_in_0_1(momentum, message):
    with pytest.raises(ValueError, match=message):
        nc.SGD(momentum=momentum)
    param, grad, velocity = np.zeros(3), np.ones(3), np.zeros(3)
    for backend in (ops, reference):
        with pytest.raises(ValueError, match=message):
            backend.sgd_momentum_(param, grad, velocity, 0.1, momentum, False, 0.0)
    assert nc.SGD(momentum=0.0).momentum == 0.0
    assert nc.SGD(momentum=0.999).momentum == 0.999


def test_the_estimators_take_the_same_momentum_range():
    pytest.importorskip("sklearn")
    from nncore.sklearn import NNClassifier, NNRegressor

    X, y = np.random.default_rng(0).normal(size=(20, 2)), np.arange(20) % 2
    for estimator, target in ((NNClassifier, y), (NNRegressor, y.astype(float))):
        with pytest.raises(ValueError, match="momentum == 1.0, must be < 1"):
            estimator(momentum=1.0, max_iter=1).fit(X, target)
    assert v.MOMENTUM_RANGE == {"minimum": 0.0, "maximum": 1.0, "exclusive_maximum": True}


def test_fit_still_accepts_zero_epochs_the_command_does_not():
    # fit(epochs=0) builds the optimizer state and returns an empty history (kept: the
    # Python API uses it); `nncore train --epochs 0` is refused above
    net = nc.mlp(n_in=2, hidden=[4], n_classes=2, seed=0)
    X, y = np.zeros((4, 2)), np.array([0, 1, 0, 1])
    assert len(net.fit(X, y, epochs=0, batch_size=2, verbose=0)) == 0
    with pytest.raises(ValueError, match="epochs must be >= 0"):
        net.fit(X, y, epochs=-1, batch_size=2, verbose=0)


def test_runs_in_the_same_second_get_their_own_folders(tmp_path, capsys, monkeypatch):
    """A user trial: 5 quick runs in a loop left 3 folders (the default name has a
    resolution of one second). Each run now gets its own folder: -2, -3, ... when taken."""
    import datetime

    class Frozen(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2026, 1, 2, 3, 4, 5)

    monkeypatch.setattr(datetime, "datetime", Frozen)
    for seed in range(3):
        status, _ = run(["train", "--data", "gmm", "--arch", "mlp", "--layers", "4",
                         "--epochs", "1", "--verbose", "0", "--no-plots", "--seed", str(seed),
                         "--out", str(tmp_path)], capsys)
        assert status == 0
    assert sorted(os.listdir(tmp_path)) == ["gmm-mlp-20260102-030405",
                                            "gmm-mlp-20260102-030405-2",
                                            "gmm-mlp-20260102-030405-3"]
    params = [nc.load(tmp_path / folder / "model.npz").params for folder in os.listdir(tmp_path)]
    assert not np.array_equal(params[0], params[1])


def test_an_existing_name_is_refused_and_its_run_kept(tmp_path, capsys):
    """Re-running with a --name that exists replaced model.npz and history.csv but left the
    older learning_curves.png beside them. Now it is refused, and the first run is intact."""
    argv = ["train", "--data", "gmm", "--arch", "mlp", "--layers", "4", "--epochs", "1",
            "--verbose", "0", "--out", str(tmp_path), "--name", "run"]
    assert run(argv, capsys)[0] == 0
    before = {name: (tmp_path / "run" / name).read_bytes()
              for name in os.listdir(tmp_path / "run")}
    status, err = run([*argv, "--seed", "1", "--no-plots"], capsys)
    assert status == 2
    assert_one_line(err, f"--name 'run': {str(tmp_path / 'run')!r} already holds a run; "
                         "choose another --name")
    assert {name: (tmp_path / "run" / name).read_bytes()
            for name in os.listdir(tmp_path / "run")} == before
    (tmp_path / "empty").mkdir()  # an empty folder holds nothing to lose: it is used
    assert run([*argv[:-1], "empty", "--no-plots"], capsys)[0] == 0
    assert sorted(os.listdir(tmp_path / "empty")) == ["checkpoint.npz", "history.csv",
                                                      "model.npz", "run.json"]


def test_a_run_refused_in_training_leaves_no_folder(tmp_path, capsys, monkeypatch):
    """Labels refused as continuous once training starts left an empty run folder (and
    --out); a failed run now writes nothing. (The CLI checks labels before it makes the
    folder now, so a refusal inside fit stands in for them.)"""
    def refuse(self, *args, **kwargs):
        raise ValueError("y looks continuous: refused inside fit")

    monkeypatch.setattr(nc.Network, "fit", refuse)
    rows = ["a,b,label"] + [f"{i},{i % 7},{i % 3}" for i in range(100)]
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "many.csv").write_text("\n".join(rows) + "\n")
    status, err = run(["train", "--data", str(tmp_path / "work" / "many.csv"), "--epochs",
                       "1", "--verbose", "0", "--no-plots",
                       "--out", str(tmp_path / "work" / "out")], capsys)
    assert status == 2
    assert_one_line(err, "looks continuous")
    assert tree(tmp_path) == ["work", os.path.join("work", "many.csv")]
    (tmp_path / "work" / "out" / "empty").mkdir(parents=True)  # made by the user: kept
    status, err = run(["train", "--data", str(tmp_path / "work" / "many.csv"), "--epochs",
                       "1", "--verbose", "0", "--no-plots",
                       "--out", str(tmp_path / "work" / "out"), "--name", "empty"], capsys)
    assert status == 2
    assert (tmp_path / "work" / "out" / "empty").is_dir()


def test_activation_is_refused_for_softmax_regression(tmp_path, capsys):
    """A user trial: --arch softmax_regression --activation relu trained without a word."""
    status, err = run(["train", "--data", "gmm", "--arch", "softmax_regression",
                       "--activation", "relu", "--out", str(tmp_path / "out")], capsys)
    assert status == 2
    assert_one_line(err, "--activation is for --arch resnet or mlp, not softmax_regression")
    assert not (tmp_path / "out").exists()
