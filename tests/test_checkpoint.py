"""Checkpoints: atomic, loadable after a SIGKILL, and resuming gives the uninterrupted result."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

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


#: The optimizers a checkpointed run is resumed with, as the tests build them.
OPTIMIZERS = {
    "sgd": lambda: nc.SGD(lr=0.05, momentum=0.9, schedule="cosine"),
    "adam": lambda: nc.Adam(lr=0.005, weight_decay=1e-3, schedule="cosine"),
    "adamw": lambda: nc.AdamW(lr=0.005, betas=(0.8, 0.99), schedule="cosine"),
}


def _train(epochs=EPOCHS, optimizer="sgd", **kwargs):
    X, y = _data()
    net = nc.mlp(5, [16, 16], 5, dtype="float64", seed=1)
    opt = OPTIMIZERS[optimizer]()
    history = net.fit(X, y, epochs=epochs, batch_size=BATCH, optimizer=opt, seed=2, verbose=0,
                      **kwargs)
    net.optimizer = opt  # for the tests to look at
    return net, history


class _InterruptAfter(nc.Callback):
    """Ctrl-C at the end of epoch ``epoch`` (1-based, as fit numbers them)."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, network, epoch, logs):
        if epoch == self.epoch:
            self.network = network
            raise KeyboardInterrupt
        return False


def _train_interrupted(*args, after, **kwargs):
    """``_train`` cut by Ctrl-C after ``after`` epochs: fit raises KeyboardInterrupt again
    after keeping the history; returns the network and that history."""
    interrupt = _InterruptAfter(after)
    with pytest.raises(KeyboardInterrupt):
        _train(*args, callbacks=[interrupt], **kwargs)
    return interrupt.network, interrupt.network.history


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    reference, reference_history = _train()
    _, history = _train_interrupted(checkpoint=tmp_path, after=10)
    assert history.interrupted and len(history) == 10
    resumed, resumed_history = _train(checkpoint=tmp_path)
    assert np.array_equal(resumed.params, reference.params)
    assert _same_history(resumed_history, reference_history)


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_resumed_adam_run_equals_uninterrupted_run(tmp_path, optimizer):
    """Adam's moments and update count are saved: a resumed run is bit-identical to an
    uninterrupted one (the bias corrections go on from the saved count)."""
    epochs = 40
    reference, reference_history = _train(epochs, optimizer)
    _, history = _train_interrupted(epochs, optimizer, checkpoint=tmp_path, checkpoint_every=4,
                                   after=10)
    assert history.interrupted and len(history) == 10
    network_state, saved, state = modelfile.load_checkpoint(tmp_path / modelfile.CHECKPOINT_FILE)
    steps_per_epoch = -(-800 // BATCH)
    assert saved["name"] == optimizer and state["epochs_done"] == 8
    assert saved["counters"] == {"step_count": 8 * steps_per_epoch}
    assert sorted(saved["arrays"]) == ["exp_avg", "exp_avg_sq"]
    resumed, resumed_history = _train(epochs, optimizer, checkpoint=tmp_path)
    assert np.array_equal(resumed.params, reference.params)
    assert np.array_equal(resumed.optimizer.exp_avg_sq, reference.optimizer.exp_avg_sq)
    assert resumed.optimizer.step_count == reference.optimizer.step_count \
        == epochs * steps_per_epoch
    assert _same_history(resumed_history, reference_history)


def test_a_checkpoint_without_the_step_count_is_not_the_same_run(tmp_path):
    """The test above can fail: resuming Adam with its count reset (as a checkpoint that kept
    only the moments would) ends elsewhere."""
    reference, _ = _train(20, "adam")
    _train_interrupted(20, "adam", checkpoint=tmp_path, after=10)
    path = tmp_path / modelfile.CHECKPOINT_FILE
    network_state, saved, state = modelfile.load_checkpoint(path)
    saved["counters"]["step_count"] = 0
    modelfile.save_checkpoint(path, network_state, saved, state)
    resumed, _ = _train(20, "adam", checkpoint=tmp_path)
    assert not np.array_equal(resumed.params, reference.params)


def test_an_sgd_checkpoint_of_the_old_format_still_resumes(tmp_path):
    """Checkpoints written before Adam hold 'velocity' and no optimizer entry in the header:
    they read as SGD's state and resume as before."""
    reference, reference_history = _train(30)
    _train_interrupted(30, checkpoint=tmp_path, after=10)
    path = tmp_path / modelfile.CHECKPOINT_FILE
    with np.load(path) as archive:
        header = json.loads(archive["header"].tobytes())
        params, velocity = archive["params"], archive["velocity"]
    del header["optimizer"]
    old_header = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(path, header=old_header, params=params, velocity=velocity)
    _, saved, _ = modelfile.load_checkpoint(path)
    assert saved["name"] == "sgd" and list(saved["arrays"]) == ["velocity"]
    resumed, resumed_history = _train(30, checkpoint=tmp_path)
    assert np.array_equal(resumed.params, reference.params)
    assert _same_history(resumed_history, reference_history)


def test_a_checkpoint_of_another_optimizer_is_refused(tmp_path):
    _train(2, "adam", checkpoint=tmp_path)
    with pytest.raises(ValueError, match="written by optimizer 'adam', this run uses 'adamw'"):
        _train(4, "adamw", checkpoint=tmp_path)
    with pytest.raises(ValueError, match="written by optimizer 'adam', this run uses 'sgd'"):
        _train(4, "sgd", checkpoint=tmp_path)


def test_checkpoint_every_n_epochs_and_after_the_last(tmp_path):
    _train(epochs=7, checkpoint=tmp_path, checkpoint_every=3)
    _, saved, state = modelfile.load_checkpoint(tmp_path / modelfile.CHECKPOINT_FILE)
    assert state["epochs_done"] == 7
    assert len(state["history"]["loss"]) == 7
    assert saved["name"] == "sgd" and list(saved["arrays"]) == ["velocity"]
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


@pytest.mark.parametrize("damage, message", [
    (lambda header, arrays: arrays.pop("exp_avg_sq"), "lacks 'exp_avg_sq'"),
    (lambda header, arrays: header["optimizer"].update(counters={"step_count": -1}),
     "optimizer entry is invalid"),
    (lambda header, arrays: header["optimizer"].update(arrays=["params"]),
     "optimizer entry is invalid"),
    (lambda header, arrays: arrays.update(exp_avg=arrays["exp_avg"][:-1]),
     "exp_avg does not match the parameters"),
    (lambda header, arrays: arrays["exp_avg_sq"].__setitem__(0, np.nan),
     "exp_avg_sq contains NaN"),
])
def test_a_damaged_optimizer_state_is_refused(tmp_path, damage, message):
    _train(1, "adam", checkpoint=tmp_path)
    path = tmp_path / modelfile.CHECKPOINT_FILE
    with np.load(path) as archive:
        header = json.loads(archive["header"].tobytes())
        arrays = {name: archive[name].copy() for name in archive.files if name != "header"}
    damage(header, arrays)
    np.savez(path, header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8), **arrays)
    with pytest.raises(modelfile.ModelFileError, match=message):
        modelfile.load_checkpoint(path)


def test_a_directory_given_as_a_model_file_says_it_is_a_directory(tmp_path):
    """nc.load(".") said "'.' is truncated or corrupted: [Errno 21] Is a directory"."""
    with pytest.raises(nc.ModelFileError, match=r"^'\.' is a directory, not a model file$"):
        nc.load(".")
    with pytest.raises(ValueError, match="is a directory, not a model file"):
        nc.load(tmp_path)


def test_a_folder_given_to_save_says_it_is_a_folder(tmp_path):
    """net.save(folder) said "[Errno 21] Is a directory: '.../.tmp-opm1cah8.partial' ->
    '...'", naming a temporary file the user never made."""
    net = nc.mlp(2, [4], 2)
    with pytest.raises(IsADirectoryError, match=r"cannot write .*: it names a folder \(give a "
                                                r"file name, such as .*model\.npz'\)$"):
        net.save(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"cannot write .*: there is no folder "):
        net.save(tmp_path / "missing" / "model.npz")
    with pytest.raises(IsADirectoryError, match=r"it names a folder"):  # said NotADirectoryError
        net.save(str(tmp_path / "newdir") + os.sep)
    assert os.listdir(tmp_path) == []
    assert nc.load(net.save(tmp_path / "model.npz")).n_params == net.n_params


@pytest.mark.parametrize("schedule", ["cosine", None])
def test_resuming_with_more_epochs_warns_when_the_schedule_depends_on_them(tmp_path, schedule):
    """A finished 20-epoch cosine run resumed with epochs=25 re-spread the schedule over 25
    epochs without a word (the learning rate went back up), ending like neither run; a
    constant rate continues exactly, and says nothing."""
    X, y = _data()

    def run(epochs):
        net = nc.mlp(5, [8], 5, dtype="float64", seed=1)
        net.fit(X, y, epochs=epochs, batch_size=BATCH, seed=2, verbose=0, checkpoint=tmp_path,
                optimizer=nc.SGD(lr=0.05, momentum=0.9, schedule=schedule))
        return net

    run(4)
    if schedule is None:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            resumed = run(6)
        np.testing.assert_array_equal(resumed.params, _uninterrupted(tmp_path, run, 6).params)
    else:
        with pytest.warns(UserWarning, match=r"written by a run of 4 epochs; with epochs=6 the "
                                             r"cosine learning-rate schedule is spread over 6"):
            run(6)


def _uninterrupted(tmp_path, run, epochs):
    """``run(epochs)`` from scratch, in a fresh checkpoint folder."""
    for name in os.listdir(tmp_path):
        os.unlink(tmp_path / name)
    return run(epochs)
