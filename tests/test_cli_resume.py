"""`nncore train --resume RUN`: an interrupted run goes on from its checkpoint and ends
bit for bit as the uninterrupted run; what would change the run is refused in one line."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import nncore as nc
from nncore import cli, train
from conftest import interruptible_child, run_cli


run = run_cli  # (status, stdout, stderr)


def history_rows(folder):
    """history.csv of a run, without the wall-clock seconds."""
    with open(os.path.join(folder, "history.csv")) as f:
        return [{key: value for key, value in row.items() if key != "seconds"}
                for row in csv.DictReader(f)]


def assert_same_run(folder, reference):
    """The run in ``folder`` ended exactly as the one in ``reference``: the same weights
    (model.npz), history and checkpoint."""
    assert np.array_equal(nc.load(os.path.join(folder, "model.npz")).params,
                          nc.load(os.path.join(reference, "model.npz")).params)
    assert history_rows(folder) == history_rows(reference)
    assert np.array_equal(*(np.load(os.path.join(path, "checkpoint.npz"))["params"]
                            for path in (folder, reference)))


def table(out):
    """The printed summary, from the table on, without the time line."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("loss"))
    return [line for line in lines[start:] if not line.strip().startswith(("time", "saved"))]


GMM = ["train", "--data", "gmm", "--arch", "mlp", "--layers", "8", "--batch-size", "16"]


@pytest.mark.skipif(not hasattr(signal, "SIGINT") or sys.platform == "win32",
                    reason="needs POSIX signals")
def test_ctrl_c_then_resume_ends_as_the_uninterrupted_run(tmp_path, capsys):
    """A real SIGINT: the run says how to go on, and `--resume` ends with the weights and
    the history (every epoch) of the run that was never interrupted."""
    epochs = ["--epochs", "60"]
    assert cli.main([*GMM, *epochs, "--verbose", "0", "--out", str(tmp_path),
                     "--name", "reference"]) == 0
    reference_out = capsys.readouterr().out
    command = [sys.executable, "-c", "import sys; from nncore.cli import main; "
               "sys.exit(main(sys.argv[1:]))", *GMM, *epochs, "--verbose", "2",
               "--out", str(tmp_path), "--name", "cut"]
    child = interruptible_child(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    deadline = time.monotonic() + 60
    assert child.stdout.readline().startswith("training")
    for number in (1, 2, 3):
        line = child.stdout.readline()
        assert line.startswith(f"epoch {number}/60"), line
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=max(deadline - time.monotonic(), 1))
    assert child.returncode == 130, err
    cut = tmp_path / "cut"
    assert f"continue the run with: nncore train --resume {cut}" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    done = len(history_rows(cut))
    assert 3 <= done < 60

    status, out, err = run(["train", "--resume", str(cut), "--verbose", "0"], capsys)
    assert status == 0, err
    assert out.startswith(f"resuming {cut} after epoch ")
    assert_same_run(cut, tmp_path / "reference")
    assert len(history_rows(cut)) == 60
    assert table(out)[:-1] == table(reference_out)[:-1]  # the same scores
    assert "epochs      60 (resumed after epoch" in out
    assert sorted(os.listdir(cut)) == ["checkpoint.npz", "history.csv", "learning_curves.png",
                                       "model.npz", "run.json"]


def interrupt_after(monkeypatch, epoch):
    """Ctrl-C right after the checkpoint of ``epoch`` is written (before the callbacks
    see that epoch: early stopping must count it again on resume)."""
    save = train._save_checkpoint

    def save_then_interrupt(path, epochs_done, *args):
        save(path, epochs_done, *args)
        if epochs_done == epoch:
            raise KeyboardInterrupt

    monkeypatch.setattr(train, "_save_checkpoint", save_then_interrupt)


@pytest.mark.parametrize("cut_at", [4, 6])
def test_resume_carries_early_stopping_on(tmp_path, capsys, monkeypatch, cut_at):
    """lr 0.5 stops after epoch 8 with the weights of epoch 4. Cut at epoch 4 (the best so
    far is the checkpoint's) or 6 (the best is in model.npz), the resumed run stops at the
    same epoch and keeps the same weights."""
    argv = [*GMM[:-2], "--lr", "0.5", "--schedule", "constant", "--patience", "4",
            "--epochs", "30", "--verbose", "0", "--no-plots", "--out", str(tmp_path)]
    status, reference_out, _ = run([*argv, "--name", "reference"], capsys)
    assert status == 0
    assert "epochs      8 (early stop; kept the weights of epoch 4" in reference_out
    interrupt_after(monkeypatch, cut_at)
    status, _, err = run([*argv, "--name", "cut"], capsys)
    assert status == 130 and "--resume" in err
    monkeypatch.undo()
    status, out, err = run(["train", "--resume", str(tmp_path / "cut"), "--verbose", "0",
                            "--no-plots"], capsys)
    assert status == 0, err
    assert_same_run(tmp_path / "cut", tmp_path / "reference")
    assert f"epochs      8 (resumed after epoch {cut_at}; early stop; kept the weights of " \
           f"epoch 4, the best val_loss)" in out
    # early stopping ended it: more epochs would not go on
    status, _, err = run(["train", "--resume", str(tmp_path / "cut"), "--epochs", "40"],
                         capsys)
    assert status == 2
    assert "early stopping ended the run after epoch 8 (--patience 4)" in err


def test_a_regression_on_a_csv_resumes_from_another_folder(tmp_path, capsys, monkeypatch):
    """The run keeps its data file by its absolute path: a --data given relative to the
    folder the run started in is found from anywhere; the history's losses (standardised
    while training, in the targets' units when saved) come out as the uninterrupted run's."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-3, 3, 300)
    rows = ["x,price"] + [f"{a:.17g},{np.sin(a) + 0.1 * b:.17g}"
                          for a, b in zip(x, rng.standard_normal(300))]
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "sine.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    argv = ["train", "--task", "regression", "--data", "sine.csv", "--arch", "mlp",
            "--layers", "16,16", "--epochs", "12", "--batch-size", "16", "--verbose", "0",
            "--out", str(tmp_path / "runs")]
    assert run([*argv, "--name", "reference"], capsys)[0] == 0
    interrupt_after(monkeypatch, 5)
    assert run([*argv, "--name", "cut"], capsys)[0] == 130
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path / "elsewhere")
    status, _, err = run(["train", "--resume", str(tmp_path / "runs" / "cut"), "--verbose",
                          "0"], capsys)
    assert status == 0, err
    assert_same_run(tmp_path / "runs" / "cut", tmp_path / "runs" / "reference")
    for figure in ("learning_curves", "predicted_vs_true", "residuals", "fitted_curve"):
        assert (tmp_path / "runs" / "cut" / f"{figure}.png").is_file()
    # the data moved (a second user trial: a --data of the same bytes was refused)
    os.rename(tmp_path / "work" / "sine.csv", tmp_path / "work" / "moved.csv")
    status, _, err = run(["train", "--resume", str(tmp_path / "runs" / "cut"), "--epochs",
                          "14", "--verbose", "0"], capsys)
    assert status != 0 and "is not there any more" in err
    status, _, err = run(["train", "--resume", str(tmp_path / "runs" / "cut"), "--epochs",
                          "14", "--verbose", "0", "--data",
                          str(tmp_path / "work" / "moved.csv")], capsys)
    assert status == 0, err  # and run.json names the new place from now on
    # the data changed since: refused, and nothing is touched
    with open(tmp_path / "work" / "moved.csv", "a") as f:
        f.write("0.5,0.5\n")
    cut = tmp_path / "runs" / "cut"
    before = {name: (cut / name).read_bytes() for name in os.listdir(cut)}
    status, _, err = run(["train", "--resume", str(cut), "--epochs", "20"], capsys)
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert "the run's data" in err and "changed since the run started" in err
    assert {name: (cut / name).read_bytes() for name in os.listdir(cut)} == before


def test_more_epochs_continue_a_finished_run_with_one_warning(tmp_path, capsys):
    argv = [*GMM, "--verbose", "0", "--no-plots", "--out", str(tmp_path), "--name", "run"]
    assert run([*argv, "--epochs", "3"], capsys)[0] == 0
    status, out, err = run(["train", "--resume", str(tmp_path / "run"), "--epochs", "5",
                            "--verbose", "0"], capsys)
    assert status == 0
    assert err.count("\n") == 1 and err.startswith("nncore train: warning: ")
    assert "cosine learning-rate schedule" in err
    assert [int(row["epoch"]) for row in history_rows(tmp_path / "run")] == [1, 2, 3, 4, 5]
    assert "epochs      5 (resumed after epoch 3)" in out
    assert (tmp_path / "run" / "learning_curves.png").is_file()  # --no-plots was the first's
    settings = json.loads((tmp_path / "run" / "run.json").read_text())["settings"]
    assert settings["epochs"] == 5  # a later --resume trains to 5, and refuses: all done
    status, _, err = run(["train", "--resume", str(tmp_path / "run")], capsys)
    assert status == 2
    assert "the run has trained its 5 epochs; give more --epochs to train on" in err


def test_options_with_the_runs_own_values_go_with_resume(tmp_path, capsys, monkeypatch):
    """The first command again, with --resume added, is accepted."""
    argv = [*GMM, "--epochs", "6", "--lr", "0.05", "--verbose", "0", "--no-plots"]
    interrupt_after(monkeypatch, 2)
    assert run([*argv, "--out", str(tmp_path), "--name", "run"], capsys)[0] == 130
    monkeypatch.undo()
    # a record written before an option existed takes that option's default
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    del record["settings"]["eps"]
    (tmp_path / "run" / "run.json").write_text(json.dumps(record))
    status, out, err = run([*argv, "--out", str(tmp_path), "--name", "run", "--resume",
                            str(tmp_path / "run")], capsys)  # the folder's own --out, --name
    assert status == 0, err
    assert "epochs      6 (resumed after epoch 2)" in out


@pytest.mark.parametrize("extra, message", [
    (["--lr", "0.1", "--seed", "3"],
     "--resume continues the run with its own settings: --seed 3 (the run has --seed 0); "
     "--lr 0.1 (the run has no --lr) would change it; start a new run for other settings"),
    (["--data", "peaks"], "--data peaks (the run has --data gmm)"),
    (["--arch", "resnet"], "--arch resnet (the run has --arch mlp)"),
    (["--layers", "8,8"], "--layers 8,8 (the run has --layers 8)"),
    (["--batch-size", "32"], "--batch-size 32 (the run has --batch-size 16)"),
    (["--optimizer", "adam"], "--optimizer adam (the run has --optimizer sgd)"),
    (["--nesterov"], "--nesterov (the run has no --nesterov)"),
    (["--no-standardize"], "--no-standardize (the run has no --no-standardize)"),
    (["--out", "elsewhere"], "names the run's folder: --out elsewhere would name another"),
    (["--name", "other"], "names the run's folder: --name other would name another"),
    (["--epochs", "3"], "--epochs 3: the run in"),
    ([], "the run has trained its 4 epochs; give more --epochs to train on"),
])
def test_what_would_change_the_run_is_refused_and_nothing_written(tmp_path, capsys, extra,
                                                                    message):
    assert run([*GMM, "--epochs", "4", "--verbose", "0", "--out", str(tmp_path), "--name",
                "run"], capsys)[0] == 0
    folder = tmp_path / "run"
    before = {name: (folder / name).read_bytes() for name in os.listdir(folder)}
    status, out, err = run(["train", "--resume", str(folder), *extra], capsys)
    assert status == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("nncore train: error: ") and message in err
    assert {name: (folder / name).read_bytes() for name in os.listdir(folder)} == before
    assert sorted(os.listdir(tmp_path)) == ["run"]


def test_a_folder_without_a_resumable_run_is_refused(tmp_path, capsys):
    status, _, err = run(["train", "--resume", str(tmp_path / "none")], capsys)
    assert status == 2 and f"--resume {str(tmp_path / 'none')!r}: no such run folder" in err
    (tmp_path / "file").write_text("")
    status, _, err = run(["train", "--resume", str(tmp_path / "file")], capsys)
    assert status == 2 and "not a folder" in err
    (tmp_path / "old").mkdir()  # a run of an nncore without --resume: no run.json
    (tmp_path / "old" / "model.npz").write_text("")
    status, _, err = run(["train", "--resume", str(tmp_path / "old")], capsys)
    assert status == 2 and "holds no run.json" in err
    assert run([*GMM, "--epochs", "2", "--verbose", "0", "--no-plots", "--out", str(tmp_path),
                "--name", "run"], capsys)[0] == 0
    # cut before its first epoch ended (a review: neither --resume nor the --name was
    # taken then): the run starts again from its first epoch, the same run
    os.unlink(tmp_path / "run" / "checkpoint.npz")
    history = tmp_path / "run" / "history.csv"
    history.write_text(history.read_text().splitlines()[0] + "\n")  # no complete epoch
    status, out, err = run(["train", "--resume", str(tmp_path / "run"), "--epochs", "4"],
                           capsys)
    assert status == 0 and "resuming" in out and "after epoch 0 of 4" in out, err
    assert run([*GMM, "--epochs", "4", "--verbose", "0", "--no-plots", "--out", str(tmp_path),
                "--name", "reference"], capsys)[0] == 0
    assert_same_run(tmp_path / "run", tmp_path / "reference")
    # a run that trained, whose checkpoint was deleted after (as the README allows): its
    # model is not trained over from the start (a second user trial)
    os.unlink(tmp_path / "run" / "checkpoint.npz")
    model = (tmp_path / "run" / "model.npz").read_bytes()
    status, _, err = run(["train", "--resume", str(tmp_path / "run"), "--epochs", "6"], capsys)
    assert status == 2 and "has trained epochs but no checkpoint" in err
    assert (tmp_path / "run" / "model.npz").read_bytes() == model
    (tmp_path / "run" / "run.json").write_text("{not json")
    status, _, err = run(["train", "--resume", str(tmp_path / "run")], capsys)
    assert status == 2 and "cannot read" in err and "Traceback" not in err
    (tmp_path / "run" / "run.json").write_text('{"format": "nncore-run", "settings": '
                                               '{"data": "gmm", "dropout": 0.5}}')
    status, _, err = run(["train", "--resume", str(tmp_path / "run")], capsys)
    assert status == 2 and "is not the record of a run of this version" in err


def test_a_taken_name_points_to_resume(tmp_path, capsys):
    argv = [*GMM, "--epochs", "1", "--verbose", "0", "--no-plots", "--out", str(tmp_path),
            "--name", "run"]
    assert run(argv, capsys)[0] == 0
    status, _, err = run(argv, capsys)
    assert status == 2
    assert f"or continue that run with --resume {tmp_path / 'run'}" in err


@pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")
def test_a_run_being_trained_is_not_resumed_a_second_time(tmp_path, capsys, monkeypatch):
    """A second user trial: two --resume of one run, in two shells, both trained to the end
    over the same files. While one trains (it holds the folder's lock), another is refused
    and touches nothing."""
    import fcntl

    interrupt_after(monkeypatch, 2)
    assert run([*GMM, "--epochs", "4", "--verbose", "0", "--no-plots", "--out", str(tmp_path),
                "--name", "run"], capsys)[0] == 130
    monkeypatch.undo()
    folder = tmp_path / "run"
    before = {name: (folder / name).read_bytes() for name in os.listdir(folder)}
    training = os.open(folder, os.O_RDONLY)  # as the first nncore train holds it
    try:
        fcntl.flock(training, fcntl.LOCK_EX | fcntl.LOCK_NB)
        status, _, err = run(["train", "--resume", str(folder)], capsys)
        assert status == 2 and f"{str(folder)!r} is in use: another nncore train" in err
        assert {name: (folder / name).read_bytes() for name in os.listdir(folder)} == before
    finally:
        os.close(training)
    assert run(["train", "--resume", str(folder), "--verbose", "0"], capsys)[0] == 0
