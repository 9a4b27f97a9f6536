"""The nncore command: a training run's outputs, one-line errors, Ctrl-C keeps the work."""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import nncore as nc
from nncore import cli
from conftest import interruptible_child


def test_train_writes_model_history_and_figures(tmp_path, capsys):
    status = cli.main(["train", "--data", "swissroll", "--epochs", "2", "--verbose", "0",
                       "--out", str(tmp_path), "--name", "run"])
    assert status == 0
    run = tmp_path / "run"
    assert sorted(os.listdir(run)) == ["checkpoint.npz", "decision_boundary.png",
                                       "history.csv", "learning_curves.png", "model.npz",
                                       "run.json"]
    with open(run / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    net = nc.load(run / "model.npz")
    X, y, X_val, y_val = nc.datasets.load("swissroll")
    out = capsys.readouterr().out
    scores = net.evaluate(X_val, y_val)
    assert f"{scores['accuracy']:.4f}" in out  # the table shows the saved model's scores
    assert "steps/s" in out and str(run / "model.npz") in out
    times = re.search(r"time +([0-9.]+) s, of which ([0-9.]+) s in [0-9,]+ training steps",
                      out)
    assert times and float(times[2]) <= float(times[1])  # 0.0 s of which 0.01 s was read


def test_train_mlp_on_a_file_without_plots(tmp_path):
    X, y, X_val, y_val = nc.datasets.make_gmm(n_train=300, n_val=100)
    path = tmp_path / "gmm.npz"
    np.savez(path, X_train=X, y_train=y, X_val=X_val, y_val=y_val)
    status = cli.main(["train", "--data", str(path), "--arch", "mlp", "--layers", "16,16",
                       "--epochs", "1", "--verbose", "0", "--no-plots", "--out",
                       str(tmp_path), "--name", "m"])
    assert status == 0
    assert sorted(os.listdir(tmp_path / "m")) == ["checkpoint.npz", "history.csv", "model.npz",
                                                  "run.json"]
    assert nc.load(tmp_path / "m" / "model.npz").layer_specs()[0]["n_out"] == 16


def test_train_on_an_npz_of_X_and_y_splits_it(tmp_path, capsys):
    """A user trial: an .npz of X and y was refused (it wanted X_train ... y_val) although
    a CSV of the same samples is split; --val-fraction now splits it too."""
    X, y, _, _ = nc.datasets.make_gmm(n_train=300, n_val=100)
    np.savez(tmp_path / "xy.npz", X=X, y=y)
    status = cli.main(["train", "--data", str(tmp_path / "xy.npz"), "--arch", "mlp",
                       "--layers", "8", "--epochs", "1", "--verbose", "0", "--no-plots",
                       "--val-fraction", "0.3", "--out", str(tmp_path), "--name", "m"])
    assert status == 0
    assert "210 train / 90 validation samples" in capsys.readouterr().out
    # its labels are named as the file holds them (a review: "y_train of ...")
    np.savez(tmp_path / "cont.npz", X=X, y=np.arange(len(X)))
    status = cli.main(["train", "--data", str(tmp_path / "cont.npz"), "--epochs", "1",
                       "--verbose", "0", "--out", str(tmp_path)])
    assert status == 2
    assert f"error: y of {tmp_path / 'cont.npz'} (training rows) looks continuous" in \
        capsys.readouterr().err


def test_width_and_depth_build_an_mlp_without_layers(tmp_path, capsys):
    """A user trial: --arch mlp --width 8 --depth 1 trained mlp 64x64x64."""
    for name, extra, widths in [("w8d1", ["--width", "8", "--depth", "1"], [8]),
                                ("w8", ["--width", "8"], [8, 8, 8]),
                                ("default", [], [64, 64, 64])]:
        assert cli.main(["train", "--data", "gmm", "--arch", "mlp", *extra, "--epochs", "1",
                         "--verbose", "0", "--no-plots", "--out", str(tmp_path),
                         "--name", name]) == 0
        specs = nc.load(tmp_path / name / "model.npz").layer_specs()
        assert [spec["n_out"] for spec in specs[:-1]] == widths


@pytest.mark.parametrize("argv, message", [
    (["train", "--lr", "-1"], "argument --lr: must be a finite number > 0"),
    (["train", "--lr", "abc"], "argument --lr: must be a number, got 'abc'"),
    (["train", "--batch-size", "0"], "argument --batch-size: must be a positive integer"),
    (["train", "--activation", "swish"], "argument --activation: invalid choice"),
    (["train", "--layers", "8,x"], "argument --layers: must be comma-separated widths"),
    (["train", "--layers", "3,,2"], "argument --layers: must be comma-separated widths"),
    (["train", "--layers", "3,"], "argument --layers: must be comma-separated widths"),
    (["train", "--seed", "-1"], "argument --seed: must be >= 0, got -1"),
    (["train", "--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_arguments_give_one_line_and_status_2(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err and "Traceback" not in err


@pytest.mark.parametrize("argv, message", [
    (["train", "--data", "no-such-set"], "unknown data set 'no-such-set'"),
    (["train", "--data", "missing.mat"], "missing.mat"),
])
def test_bad_data_gives_one_line_and_status_2(argv, message, tmp_path, capsys):
    status = cli.main([*argv, "--out", str(tmp_path), "--verbose", "0"])
    assert status == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err


@pytest.mark.parametrize("argv, expected", [
    ([], nc.SGD(lr=0.02, momentum=0.9, schedule="cosine")),
    (["--optimizer", "sgd", "--lr", "0.1", "--nesterov", "--weight-decay", "0.01"],
     nc.SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01, schedule="cosine")),
    (["--optimizer", "adam"], nc.Adam(lr=1e-3, schedule="cosine")),
    (["--optimizer", "adam", "--lr", "0.003", "--beta2", "0.99", "--eps", "1e-6",
      "--weight-decay", "0.001"],
     nc.Adam(lr=0.003, betas=(0.9, 0.99), eps=1e-6, weight_decay=0.001, schedule="cosine")),
    (["--optimizer", "adamw", "--beta1", "0.8"],
     nc.AdamW(lr=1e-3, betas=(0.8, 0.999), weight_decay=0.01, schedule="cosine")),
    (["--optimizer", "adamw", "--schedule", "constant"], nc.AdamW(schedule="constant")),
], ids=["default-sgd", "sgd-options", "adam-defaults", "adam-options", "adamw-beta1",
        "adamw-constant"])
def test_train_builds_the_optimizer_of_its_options(argv, expected):
    """Options not given take the chosen optimizer's own defaults (Adam's rate is 0.001,
    SGD's 0.02)."""
    args = cli._build_parser().parse_args(["train", *argv])
    optimizer = cli._optimizer(args)
    assert type(optimizer) is type(expected) and repr(optimizer) == repr(expected)


@pytest.mark.parametrize("argv, message", [
    (["--optimizer", "adam", "--momentum", "0.5"], "--momentum is for --optimizer sgd, not adam"),
    (["--optimizer", "adamw", "--nesterov"], "--nesterov is for --optimizer sgd, not adamw"),
    (["--beta1", "0.8"], "--beta1 is for --optimizer adam or adamw, not sgd"),
    (["--optimizer", "sgd", "--eps", "1e-6"], "--eps is for --optimizer adam or adamw, not sgd"),
])
def test_an_option_of_another_optimizer_is_refused_in_one_line(argv, message, tmp_path,
                                                                 capsys):
    status = cli.main(["train", *argv, "--epochs", "1", "--verbose", "0", "--out",
                       str(tmp_path)])
    assert status == 2
    err = capsys.readouterr().err
    assert err.strip() == f"nncore train: error: {message}"


@pytest.mark.parametrize("argv, message", [
    (["train", "--optimizer", "adagrad"], "argument --optimizer: invalid choice: 'adagrad'"),
    (["train", "--beta1", "1"], "argument --beta1: must be a number in [0, 1), got 1"),
    (["train", "--beta2", "-0.1"], "argument --beta2: must be a number in [0, 1)"),
    (["train", "--eps", "0"], "argument --eps: must be a finite number > 0"),
])
def test_bad_optimizer_arguments_give_one_line_and_status_2(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err


def test_train_with_adam(tmp_path, capsys):
    status = cli.main(["train", "--data", "gmm", "--optimizer", "adamw", "--epochs", "2",
                       "--verbose", "0", "--no-plots", "--out", str(tmp_path), "--name", "a"])
    assert status == 0
    out = capsys.readouterr().out
    assert "AdamW(lr=0.001" in out.splitlines()[0]
    assert nc.load(tmp_path / "a" / "model.npz").evaluate(
        *nc.datasets.load("gmm")[2:])["accuracy"] > 0.8


def test_divergence_saves_the_last_finite_weights_and_exits_1(tmp_path, capsys):
    status = cli.main(["train", "--data", "peaks", "--lr", "1000", "--epochs", "3",
                       "--verbose", "0", "--out", str(tmp_path), "--name", "div"])
    assert status == 1
    err = capsys.readouterr().err
    assert "training diverged at epoch" in err and "Traceback" not in err
    assert str(tmp_path / "div" / "model.npz") in err
    assert np.isfinite(nc.load(tmp_path / "div" / "model.npz").params).all()


def test_ctrl_c_while_the_parser_is_built_is_one_line_and_exit_130(monkeypatch, capsys):
    """Ctrl-C in the first 0.3 s of nncore train (imports, building the parser) printed a
    KeyboardInterrupt traceback."""
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_build_parser", interrupted)
    assert cli.main(["train", "--epochs", "1"]) == 130
    assert capsys.readouterr().err == "nncore train: interrupted\n"
    assert cli.main([]) == 130
    assert capsys.readouterr().err == "nncore: interrupted\n"


def interrupt_after(epochs, monkeypatch):
    """Ctrl-C just after the epoch ``epochs`` is recorded in the history."""
    from nncore.train import History

    append = History.append

    def append_then_interrupt(self, **row):
        append(self, **row)
        if len(self) == epochs:
            raise KeyboardInterrupt

    monkeypatch.setattr(History, "append", append_then_interrupt)


@pytest.mark.parametrize("verbose", ["1", "2"])
def test_ctrl_c_during_train_prints_only_the_cli_line(verbose, tmp_path, monkeypatch, capsys):
    """With a progress bar or epoch lines, fit's own 'training interrupted ... kept on the
    network (network.history)', meaningless to a command-line user, came first."""
    interrupt_after(2, monkeypatch)
    assert cli.main(["train", "--data", "gmm", "--arch", "mlp", "--layers", "8",
                     "--epochs", "5", "--verbose", verbose, "--no-plots", "--out",
                     str(tmp_path), "--name", "cut"]) == 130
    err = capsys.readouterr().err
    assert "nncore train: interrupted after 2 complete epoch(s)" in err
    assert "training interrupted" not in err and "network.history" not in err
    with open(tmp_path / "cut" / "history.csv") as f:
        assert len(list(csv.DictReader(f))) == 2  # what was trained is kept


@pytest.mark.parametrize("patience", [None, "20"])
def test_ctrl_c_during_train_says_which_weights_the_model_holds(patience, tmp_path,
                                                                monkeypatch, capsys):
    """'interrupted after 4 complete epoch(s)' did not say whose weights model.npz held:
    with --patience the best epoch's, else those of the moment of the interrupt."""
    interrupt_after(5, monkeypatch)  # the val_loss of epochs 1-5: best at 4
    assert cli.main(["train", "--data", "gmm", "--arch", "mlp", "--layers", "32", "--lr",
                     "1.0", "--schedule", "constant", "--epochs", "8", "--verbose", "0",
                     "--no-plots", "--out", str(tmp_path), "--name", "cut",
                     *(["--patience", patience] if patience else [])]) == 130
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    with open(tmp_path / "cut" / "history.csv") as f:
        val_loss = [float(row["val_loss"]) for row in csv.DictReader(f)]
    if patience is None:
        assert "the model (the weights as they were at the interrupt, which may be partway " \
               "through an epoch) and the history of the complete epochs are in" in err
        return
    best = int(np.argmin(val_loss)) + 1
    assert best != len(val_loss)  # the run shows the difference
    assert f"the model (the weights of epoch {best}, the best val_loss) and the history " \
           f"of the complete epochs are in {tmp_path / 'cut' / 'model.npz'}" in err
    _, _, X_val, y_val = nc.datasets.load("gmm")
    saved = nc.load(tmp_path / "cut" / "model.npz").evaluate(X_val, y_val)["loss"]
    assert saved == pytest.approx(val_loss[best - 1], rel=1e-6)


def test_learning_curves_mark_the_epoch_early_stopping_kept(tmp_path, monkeypatch, capsys):
    """learning_curves.png of a run with --patience did not show whose weights were kept."""
    from nncore import plots

    plt = plots.pyplot()
    seen = []
    monkeypatch.setattr(plt, "close", seen.append)
    assert cli.main(["train", "--data", "gmm", "--arch", "mlp", "--layers", "32", "--lr",
                     "0.3", "--epochs", "60", "--patience", "3", "--verbose", "0", "--out",
                     str(tmp_path), "--name", "es"]) == 0
    assert "early stop; kept the weights of epoch 3" in capsys.readouterr().out
    (figure,) = seen
    for ax in figure.axes:
        kept = [line for line in ax.get_lines()
                if line.get_label() == "weights kept (epoch 3)"]
        assert len(kept) == 1 and list(kept[0].get_xdata()) == [3, 3]
        assert "weights kept (epoch 3)" in [t.get_text() for t in ax.get_legend().get_texts()]
    monkeypatch.undo()
    plt.close("all")


def test_early_stopping_that_never_stopped_still_says_which_weights_were_kept(tmp_path,
                                                                              capsys):
    """--patience 20 over 8 epochs never stops, yet EarlyStopping gives the network its
    best epoch's weights back: the model saved was an earlier epoch's, and nothing said
    so."""
    assert cli.main(["train", "--data", "gmm", "--arch", "mlp", "--layers", "32", "--lr",
                     "1.0", "--schedule", "constant", "--epochs", "8", "--patience", "20",
                     "--verbose", "0", "--out", str(tmp_path), "--name", "p"]) == 0
    out = capsys.readouterr().out
    with open(tmp_path / "p" / "history.csv") as f:
        val_loss = [float(row["val_loss"]) for row in csv.DictReader(f)]
    best = int(np.argmin(val_loss)) + 1
    assert best != 8  # the run shows the difference
    assert f"epochs      8 (kept the weights of epoch {best}, the best val_loss)" in out
    _, _, X_val, y_val = nc.datasets.load("gmm")
    saved = nc.load(tmp_path / "p" / "model.npz").evaluate(X_val, y_val)["loss"]
    assert saved == pytest.approx(val_loss[best - 1], rel=1e-6) != val_loss[7]


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 2
    assert "train" in capsys.readouterr().out


def test_version_prints_the_package_version(capsys):
    """A user trial: `nncore --version` was an unrecognized argument."""
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"nncore {nc.__version__}\n"
    assert "--version" in cli._build_parser().format_help()


@pytest.mark.skipif(not hasattr(signal, "SIGINT") or sys.platform == "win32",
                    reason="needs POSIX signals")
def test_ctrl_c_during_train_saves_the_model_and_history_says_where_and_exits_130(tmp_path):
    command = [sys.executable, "-c", "import sys; from nncore.cli import main; "
               "sys.exit(main(sys.argv[1:]))", "train", "--data", "peaks", "--epochs",
               "100000", "--verbose", "2", "--no-plots", "--out", str(tmp_path),
               "--name", "interrupted"]
    child = interruptible_child(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    deadline = time.monotonic() + 60
    first_line = child.stdout.readline()  # "training resnet ..."
    assert first_line.startswith("training"), first_line
    epoch_line = child.stdout.readline()  # one epoch done
    assert epoch_line.startswith("epoch 1/"), epoch_line
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=max(deadline - time.monotonic(), 1))
    assert child.returncode == 130, err
    run = tmp_path / "interrupted"
    assert "nncore train: interrupted after" in err and str(run / "model.npz") in err
    assert "Traceback" not in err
    net = nc.load(run / "model.npz")
    assert np.isfinite(net.params).all()
    with open(run / "history.csv") as f:
        assert len(list(csv.DictReader(f))) >= 1


@pytest.mark.skipif(not hasattr(signal, "SIGINT") or sys.platform == "win32",
                    reason="needs POSIX signals")
def test_ctrl_c_during_a_search_exits_130_records_no_cut_trial_and_a_rerun_completes_it(
        tmp_path):
    """Two trials, 1 and 100 epochs: Ctrl-C once the first is written lands in the second,
    which must not be recorded (it used to be written as "ok" after a few epochs)."""
    grid = tmp_path / "grid.toml"
    grid.write_text("[grid]\nepochs = [1, 100]\n")
    results = tmp_path / "results.jsonl"
    command = [sys.executable, "-c", "import sys; from nncore.cli import main; "
               "sys.exit(main(sys.argv[1:]))", "search", "--grid", str(grid), "--data", "gmm",
               "--results", str(results), "--n-jobs", "1", "--verbose", "2"]
    child = interruptible_child(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    deadline = time.monotonic() + 60
    assert child.stdout.readline().startswith("grid search")
    line = child.stdout.readline()
    assert line.startswith("[1/2] epochs=1"), line
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=max(deadline - time.monotonic(), 1))
    assert child.returncode == 130, err
    assert "nncore search: interrupted" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    records = [json.loads(text) for text in results.read_text().splitlines()]
    assert [record["training"]["epochs"] for record in records] == [1]
    # the rerun resumes: it skips the finished trial and runs the cut one to the end
    assert cli.main(["search", "--grid", str(grid), "--data", "gmm", "--results",
                     str(results), "--n-jobs", "1", "--verbose", "0"]) == 0
    records = [json.loads(text) for text in results.read_text().splitlines()]
    assert [(r["training"]["epochs"], r["status"], r["epochs_run"]) for r in records] == [
        (1, "ok", 1), (100, "ok", 100)]
