"""nncore.search.grid_search and `nncore search`: resumable JSON-lines results, full curves,
results that do not depend on n_jobs or the joblib backend, a real Dask cluster, bad input."""

import json
import warnings

import numpy as np
import pytest

import nncore as nc
from nncore import cli
from nncore.search import SearchResults, build_network, grid_search, load_grid, read_results

EPOCHS = 3
GRID = {"lr": [0.02, 0.1], "width": [4, 8]}
FIXED = {"architecture": "resnet", "depth": 1, "batch_size": 32}


@pytest.fixture(scope="module")
def data():
    return nc.datasets.make_swissroll(n_train=400, n_val=120, seed=1)


def comparable(results):
    """The records without what depends on timing."""
    records = []
    for record in results:
        record = dict(record)
        record.pop("seconds")
        record["history"] = {k: v for k, v in record["history"].items() if k != "seconds"}
        records.append(record)
    return records


@pytest.fixture(scope="module")
def sequential(data, tmp_path_factory):
    path = tmp_path_factory.mktemp("sequential") / "results.jsonl"
    return grid_search("auto", GRID, data, epochs=EPOCHS, fixed=FIXED, results=path)


def test_every_trial_is_a_json_line_with_its_full_curves(sequential):
    assert isinstance(sequential, SearchResults) and len(sequential) == 4
    lines = sequential.path.read_text().splitlines()
    assert len(lines) == 4
    records = [json.loads(line) for line in lines]
    assert {r["key"] for r in records} == {t["key"] for t in sequential}
    # grid order: the last key varies fastest
    assert [t["params"] for t in sequential] == [
        {"lr": 0.02, "width": 4}, {"lr": 0.02, "width": 8},
        {"lr": 0.1, "width": 4}, {"lr": 0.1, "width": 8}]
    for trial in sequential:
        assert trial["status"] == "ok" and trial["epochs_run"] == EPOCHS
        for column in nc.History.COLUMNS:
            assert len(trial["history"][column]) == EPOCHS
        assert trial["final"]["val_accuracy"] == trial["history"]["val_accuracy"][-1]
        assert trial["training"]["batch_size"] == 32 and trial["model"]["depth"] == 1
        assert trial["architecture"]["width"] == trial["params"]["width"]
    ranked = [sequential.score(t) for t in sequential.ranked()]
    assert ranked == sorted(ranked, reverse=True)
    assert sequential.best is sequential.ranked()[0]
    table = sequential.table()
    assert table.splitlines()[0].split()[:3] == ["rank", "lr", "width"]
    assert len(table.splitlines()) == 2 + 4


def test_a_trial_reproduces_a_plain_fit_with_its_seeds(sequential, data):
    trial = sequential[1]
    X, y, X_val, y_val = data
    net = build_network(2, 2, trial["init_seed"], **trial["model"])
    history = net.fit(X, y, epochs=EPOCHS, batch_size=32, validation_data=(X_val, y_val),
                      optimizer=nc.SGD(lr=trial["training"]["lr"], momentum=0.9,
                                       schedule="cosine"),
                      seed=trial["shuffle_seed"], verbose=0)
    assert history["val_loss"] == trial["history"]["val_loss"]


@pytest.mark.parametrize("n_jobs, backend", [(2, "loky"), (2, "threading")])
def test_results_do_not_depend_on_n_jobs_or_backend(sequential, data, tmp_path, n_jobs,
                                                    backend):
    parallel = grid_search("auto", GRID, data, epochs=EPOCHS, fixed=FIXED, n_jobs=n_jobs,
                           backend=backend, results=tmp_path / "results.jsonl")
    assert comparable(parallel) == comparable(sequential)


def test_seeds_follow_the_settings_not_the_position(sequential, data, tmp_path):
    reordered = {"width": [8, 4], "lr": [0.1, 0.02]}
    results = grid_search("auto", reordered, data, epochs=EPOCHS, fixed=FIXED,
                          results=tmp_path / "results.jsonl")
    by_settings = {(t["params"]["lr"], t["params"]["width"]): t for t in comparable(results)}
    for trial in comparable(sequential):
        other = by_settings[trial["params"]["lr"], trial["params"]["width"]]
        assert other["key"] == trial["key"] and other["history"] == trial["history"]
    other_seed = grid_search("auto", GRID, data, epochs=EPOCHS, fixed=FIXED, seed=1,
                             results=tmp_path / "results.jsonl")
    assert other_seed.n_resumed == 0  # a new base seed is a new search, in the same file
    assert {t["init_seed"] for t in other_seed}.isdisjoint({t["init_seed"] for t in sequential})
    assert len(read_results(tmp_path / "results.jsonl")) == 8


def test_a_longer_run_of_a_trial_starts_the_same_way(sequential, data, tmp_path):
    longer = grid_search("auto", GRID, data, epochs=EPOCHS + 2, fixed=FIXED,
                         results=tmp_path / "results.jsonl")
    seeds = {(t["params"]["lr"], t["params"]["width"]): (t["init_seed"], t["shuffle_seed"])
             for t in longer}
    for trial in sequential:
        assert seeds[trial["params"]["lr"], trial["params"]["width"]] == \
            (trial["init_seed"], trial["shuffle_seed"])


def test_sgd_trials_keep_the_keys_and_seeds_they_had_before_the_optimizer_choice(
        sequential, data, tmp_path):
    """A results file written before there was an ``optimizer`` key resumes: an SGD trial's
    key and seeds are computed from its settings without it, as they were; the record
    names its optimizer all the same, and ``optimizer = "sgd"`` given is the same trial."""
    from nncore.search import _digest, trial_seeds

    for trial in sequential:
        assert trial["training"]["optimizer"] == "sgd"
        before = {k: value for k, value in trial["training"].items() if k != "optimizer"}
        assert set(before) == {"lr", "momentum", "nesterov", "weight_decay", "schedule",
                               "batch_size", "epochs"}
        assert trial["key"] == _digest({"build": "nncore.search.build_network",
                                        "model": trial["model"], "training": before,
                                        "seed": 0, "repeat": 0, "data": trial["data"]})[:24]
        seed_training = {k: value for k, value in before.items() if k != "epochs"}
        assert (trial["init_seed"], trial["shuffle_seed"]) == trial_seeds(
            0, {"model": trial["model"], "training": seed_training, "repeat": 0})
    results = tmp_path / "results.jsonl"
    results.write_text(sequential.path.read_text())
    named = grid_search("auto", GRID, data, epochs=EPOCHS, fixed={**FIXED, "optimizer": "sgd"},
                        results=results)
    assert named.n_resumed == 4


def test_a_grid_over_optimizers(data, tmp_path):
    """``optimizer`` as a grid key: each trial takes its optimizer's defaults for what the
    grid leaves out (Adam: lr 0.001, betas, eps), records them, and is the plain fit of
    that optimizer with the trial's seeds."""
    grid = {"optimizer": ["sgd", "adam", "adamw"], "width": [4]}
    results = grid_search("auto", grid, data, epochs=2, fixed=FIXED,
                          results=tmp_path / "results.jsonl")
    sgd, adam, adamw = results
    assert sgd["training"]["lr"] == 0.02 and sgd["training"]["momentum"] == 0.9
    assert adam["training"] == {"optimizer": "adam", "lr": 0.001, "betas": [0.9, 0.999],
                                "eps": 1e-8, "weight_decay": 0.0, "schedule": "cosine",
                                "batch_size": 32, "epochs": 2}
    assert adamw["training"]["weight_decay"] == 0.01
    assert len({trial["init_seed"] for trial in results}) == 3
    X, y, X_val, y_val = data
    net = build_network(2, 2, adamw["init_seed"], **adamw["model"])
    history = net.fit(X, y, epochs=2, batch_size=32, validation_data=(X_val, y_val),
                      optimizer=nc.AdamW(schedule="cosine"), seed=adamw["shuffle_seed"],
                      verbose=0)
    assert history["val_loss"] == adamw["history"]["val_loss"]
    tuned = grid_search("auto", {"betas": [[0.9, 0.99], [0.8, 0.999]], "eps": [1e-6]}, data,
                        epochs=1, fixed={**FIXED, "optimizer": "adam", "width": 4},
                        results=tmp_path / "results.jsonl")
    assert [t["training"]["betas"] for t in tuned] == [[0.9, 0.99], [0.8, 0.999]]
    assert all(t["status"] == "ok" for t in tuned)


def test_the_threading_backend_leaves_the_blas_thread_count_as_it_was(data, tmp_path):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = [pool["num_threads"] for pool in threadpoolctl.threadpool_info()]
    grid_search("auto", GRID, data, epochs=1, fixed=FIXED, n_jobs=2, backend="threading",
                results=tmp_path / "results.jsonl")
    assert [pool["num_threads"] for pool in threadpoolctl.threadpool_info()] == before


class InterruptingBuild:
    """The default builder, but Ctrl-C arrives on call number ``interrupt_at``."""

    def __init__(self, interrupt_at=None):
        self.calls, self.interrupt_at = 0, interrupt_at

    def __call__(self, n_in, n_classes, seed, **settings):
        self.calls += 1
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        return build_network(n_in, n_classes, seed, **settings)


def test_an_interrupted_search_resumes_without_rerunning_finished_trials(data, tmp_path,
                                                                         sequential):
    path = tmp_path / "results.jsonl"
    build = InterruptingBuild(interrupt_at=4)  # 2 probes (one per width), then trials
    with pytest.raises(KeyboardInterrupt):
        grid_search(build, GRID, data, epochs=EPOCHS, fixed=FIXED, results=path)
    assert len(read_results(path)) == 1  # the first trial was written as it finished
    build.interrupt_at, build.calls = None, 0
    resumed = grid_search(build, GRID, data, epochs=EPOCHS, fixed=FIXED, results=path)
    assert resumed.n_resumed == 1 and build.calls == 2 + 3
    assert len(read_results(path)) == 4
    again = grid_search(build, GRID, data, epochs=EPOCHS, fixed=FIXED, results=path)
    assert again.n_resumed == 4 and build.calls == 2 + 3 + 2  # only the probes
    # same trials as an uninterrupted search, but for the builder's name in the keys
    strip = [{k: v for k, v in t.items() if k not in ("key", "build")}
             for t in comparable(resumed)]
    assert strip == [{k: v for k, v in t.items() if k not in ("key", "build")}
                     for t in comparable(sequential)]


def test_a_line_cut_short_by_a_crash_is_skipped_and_its_trial_rerun(data, tmp_path,
                                                                    sequential):
    path = tmp_path / "results.jsonl"
    lines = sequential.path.read_text().splitlines()
    path.write_text("\n".join(lines[:2]) + "\n" + lines[2][:50])  # no final newline
    with pytest.warns(UserWarning, match=r"results.jsonl:3: not a trial record"):
        results = grid_search("auto", GRID, data, epochs=EPOCHS, fixed=FIXED, results=path)
    assert results.n_resumed == 2
    assert comparable(results) == comparable(sequential)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        json_lines = [json.loads(line) for line in path.read_text().splitlines()[3:]]
    assert len(json_lines) == 2  # appended after the damaged line, each on its own line


def test_a_diverged_trial_is_recorded_and_ranked_last(tmp_path):
    X, y, X_val, y_val = nc.datasets.make_swissroll(n_train=200, n_val=50)
    data = (X * 1e15, y, X_val, y_val)  # lr 1e30 then overflows float32 weights at once
    results = grid_search("auto", {"lr": [1e30, 0.01]}, data, epochs=2,
                          fixed={"architecture": "softmax_regression"},
                          results=tmp_path / "r.jsonl")
    diverged = results[0]
    assert diverged["status"] == "diverged" and "diverged" in diverged["message"]
    assert diverged["final"]["val_accuracy"] is None and results.score(diverged) is None
    assert results.ranked()[-1] is diverged and results.best is results[1]
    assert "diverged" in results.table().splitlines()[-1]
    resumed = grid_search("auto", {"lr": [1e30, 0.01]}, data, epochs=2,
                          fixed={"architecture": "softmax_regression"},
                          results=tmp_path / "r.jsonl")
    assert resumed.n_resumed == 2  # a diverged trial is finished, not retried


def test_a_callable_builder_and_other_metrics(data, tmp_path):
    def two_layers(n_in, n_classes, seed, width):
        return nc.mlp(n_in, [width, width], n_classes, seed=seed)

    results = grid_search(two_layers, {"width": [3, 6]}, data, epochs=2, metric="val_loss",
                          results=tmp_path / "r.jsonl")
    assert [t["architecture"]["hidden"] for t in results] == [[3, 3], [6, 6]]
    losses = [results.score(t) for t in results.ranked()]
    assert losses == sorted(losses)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"grid": {}}, ValueError, "grid is empty"),
    ({"grid": {"lr": []}}, ValueError, r"grid\['lr'\] is an empty list"),
    ({"grid": {"lr": [0.1, 0.1]}}, ValueError, "lists the value 0.1 twice"),
    ({"grid": {"lr": [-1]}}, ValueError, r"grid\['lr'\] must be a finite number > 0"),
    ({"grid": {"batch_size": [2.5]}}, TypeError, r"grid\['batch_size'\] must be an integer"),
    ({"grid": {"widht": [3]}}, ValueError, "unknown grid key.*'widht'"),
    ({"grid": {"width": [0]}}, ValueError, r"grid\['width'\] must be >= 1"),
    ({"grid": {"activation": ["swish"]}}, ValueError, "cannot build a network"),
    ({"grid": {"batch_size": [10_000]}}, ValueError, "batch_size 10000 is larger"),
    ({"fixed": {"lr": 0.1}}, ValueError, "'lr' given both in grid and in fixed"),
    ({"metric": "f1"}, ValueError, "metric must be one of"),
    ({"n_jobs": 0}, ValueError, "n_jobs must be a nonzero integer"),
    ({"epochs": 0}, ValueError, "epochs must be >= 1"),
    ({"seed": -1}, ValueError, "seed must be >= 0"),
    ({"build": "mlp"}, ValueError, "build must be a callable or 'auto'"),
    ({"build": 3}, TypeError, "build must be a callable"),
    ({"data": [1, 2]}, TypeError, "data must be a data set name"),
    ({"verbose": 3}, ValueError, "verbose must be 0, 1 or 2"),
    ({"grid": {"schedule": [["cosine"]]}}, ValueError, r"grid\['schedule'\] must be one of"),
    ({"grid": {"nesterov": [True]}, "fixed": {"momentum": 0}}, ValueError,
     "nesterov=True needs momentum > 0"),
    ({"grid": {"optimizer": ["adagrad"]}}, ValueError,
     r"grid\['optimizer'\] must be one of \('sgd', 'adam', 'adamw'\), got 'adagrad'"),
    ({"grid": {"optimizer": ["sgd", "adam"]}, "fixed": {"momentum": 0.5}}, ValueError,
     "'momentum' is a setting of optimizer 'sgd'; a trial with optimizer 'adam' does not "
     "take it"),
    ({"grid": {"betas": [[0.9, 0.99]]}}, ValueError,
     "'betas' is a setting of optimizer 'adam' or 'adamw'; a trial with optimizer 'sgd'"),
    ({"grid": {"betas": [0.9, 0.999]}, "fixed": {"optimizer": "adam"}}, TypeError,
     r"grid\['betas'\] must be a pair \[beta1, beta2\], got 0.9"),
    ({"grid": {"lr": [0.1]}, "fixed": {"optimizer": "adam", "betas": [0.9, 1.0]}}, ValueError,
     r"fixed\['betas'\]\[1\] must be < 1"),
    ({"grid": {"eps": [0]}, "fixed": {"optimizer": "adam"}}, ValueError,
     r"grid\['eps'\] must be a finite number > 0"),
    ({"grid": {"momentum": [0.5, 1.0]}}, ValueError, r"grid\['momentum'\] must be < 1"),
    ({"fixed": {"momentum": -0.1}}, ValueError, r"fixed\['momentum'\] must be >= 0"),
])
def test_bad_arguments_are_refused_before_any_trial(data, tmp_path, kwargs, error, message):
    arguments = {"build": "auto", "grid": {"lr": [0.1]}, "data": data, "epochs": 1,
                 "results": tmp_path / "r.jsonl", **kwargs}
    with pytest.raises(error, match=message):
        grid_search(**arguments)
    assert not (tmp_path / "r.jsonl").exists()


# --- grid files and the command ------------------------------------------------------------

GRID_TOML = """\
epochs = 2
seed = 3

[fixed]
architecture = "mlp"
depth = 1

[grid]
lr = [0.05, 0.2]
width = [4, 8]
"""


def test_load_grid_reads_grid_fixed_and_settings(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text(GRID_TOML)
    spec = load_grid(path)
    assert spec == {"grid": {"lr": [0.05, 0.2], "width": [4, 8]},
                    "fixed": {"architecture": "mlp", "depth": 1}, "epochs": 2, "seed": 3,
                    "metric": None}


@pytest.mark.parametrize("text, message", [
    ("[grid\nlr = 1", "not valid TOML"),
    ("epochs = 2\n", r"no \[grid\] table"),
    ("epoch = 2\n[grid]\nlr = [0.1]\n", "unknown top-level key"),
    ("[grid]\nlr = [0.1, 'fast']\n", r"grid\['lr'\] must be a number"),
    ("metric = 'f1'\n[grid]\nlr = [0.1]\n", "metric must be one of"),
])
def test_load_grid_names_what_is_wrong(tmp_path, text, message):
    path = tmp_path / "grid.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_grid(path)


def test_search_command_prints_a_ranked_table_and_resumes(tmp_path, capsys, data):
    X, y, X_val, y_val = data
    data_path = tmp_path / "data.npz"
    np.savez(data_path, X_train=X, y_train=y, X_val=X_val, y_val=y_val)
    (tmp_path / "grid.toml").write_text(GRID_TOML)
    argv = ["search", "--grid", str(tmp_path / "grid.toml"), "--data", str(data_path),
            "--results", str(tmp_path / "r.jsonl"), "--verbose", "2"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "grid search: 4 trial(s) over lr (2) x width (2), 2 epochs each" in out
    assert out.count("[") >= 4 and "[4/4]" in out  # progress across trials
    table = out[out.index("rank"):].splitlines()
    assert table[0].split()[:3] == ["rank", "lr", "width"] and table[2].split()[0] == "1"
    assert "4 trials (4 run" in out and "best: lr=" in out
    records = read_results(tmp_path / "r.jsonl")
    assert [r["history"]["epoch"] for r in records] == [[1, 2]] * 4
    assert {r["seed"] for r in records} == {3}
    assert cli.main(argv + ["--top", "2"]) == 0
    out = capsys.readouterr().out
    assert "4 trials (0 run" in out and "4 resumed" in out
    assert len(out[out.index("rank"):].split("\n\n")[0].splitlines()) == 2 + 2


@pytest.mark.parametrize("argv, message", [
    (["search"], "the following arguments are required: --grid"),
    (["search", "--grid", "nosuch.toml"], "grid file 'nosuch.toml' not found"),
    (["search", "--grid", "DIR"], "is a directory, not a TOML file"),
    (["search", "--grid", "GRID", "--n-jobs", "0"], "argument --n-jobs: must be a nonzero"),
    (["search", "--grid", "GRID", "--backend", "dask"], "--backend dask needs --scheduler"),
    (["search", "--grid", "GRID", "--data", "nosuch"], "unknown data set 'nosuch'"),
])
def test_search_bad_arguments_give_one_line_and_status_2(argv, message, tmp_path, capsys):
    (tmp_path / "grid.toml").write_text(GRID_TOML)
    argv = [str(tmp_path / "grid.toml") if a == "GRID" else str(tmp_path) if a == "DIR"
            else a for a in argv]
    try:
        status = cli.main(argv)
    except SystemExit as exit_:
        status = exit_.code
    assert status == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err and "Traceback" not in err


@pytest.mark.parametrize("name, text", [
    ("mydata.csv", "a,b,label\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(40))),
    ("script.py", "print('hello')\n"),
])
def test_search_refuses_a_results_file_that_is_not_one_and_leaves_it_alone(
        name, text, tmp_path, capsys, data):
    """`nncore search --results mydata.csv` warned 'not a trial record; skipped' for every
    line of the user's data, then appended JSON lines to it."""
    X, y, X_val, y_val = data
    np.savez(tmp_path / "data.npz", X_train=X, y_train=y, X_val=X_val, y_val=y_val)
    (tmp_path / "grid.toml").write_text(GRID_TOML)
    theirs = tmp_path / name
    theirs.write_text(text)
    status = cli.main(["search", "--grid", str(tmp_path / "grid.toml"), "--data",
                       str(tmp_path / "data.npz"), "--results", str(theirs)])
    captured = capsys.readouterr()
    assert status == 2 and captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nncore search: error: --results ")
    assert "is not a results file" in lines[0]
    assert theirs.read_text() == text  # nothing appended
    with pytest.raises(ValueError, match="is not a results file"):  # the Python API too
        grid_search("auto", GRID, data, epochs=1, fixed=FIXED, results=theirs)
    assert theirs.read_text() == text


def test_an_empty_results_file_is_written_into(tmp_path, data):
    path = tmp_path / "r.jsonl"
    path.write_text("\n")
    results = grid_search("auto", {"lr": [0.1]}, data, epochs=1, fixed=FIXED, results=path)
    assert len(read_results(path)) == 1 == len(results)


def test_a_grid_refused_by_the_search_prints_no_header(tmp_path, capsys, data):
    """A grid that load_grid accepts but the search refuses (a batch larger than the
    training set) printed 'grid search: 1 trial(s) ... results in r.jsonl' before its
    error."""
    X, y, X_val, y_val = data
    np.savez(tmp_path / "data.npz", X_train=X, y_train=y, X_val=X_val, y_val=y_val)
    (tmp_path / "grid.toml").write_text("[grid]\nbatch_size = [100000]\n")
    status = cli.main(["search", "--grid", str(tmp_path / "grid.toml"), "--data",
                       str(tmp_path / "data.npz"), "--results", str(tmp_path / "r.jsonl")])
    captured = capsys.readouterr()
    assert status == 2 and captured.out == ""
    assert captured.err == ("nncore search: error: batch_size 100000 is larger than the "
                            "training set (400 samples)\n")
    assert not (tmp_path / "r.jsonl").exists()


def test_search_on_real_valued_targets_says_it_does_classification_only(tmp_path, capsys):
    """It said 'real-valued targets need --task regression', an option search lacks."""
    (tmp_path / "grid.toml").write_text(GRID_TOML)
    rows = ["a,b,y"] + [f"{i},{i % 7},{i / 7:.3f}" for i in range(1, 60)]
    (tmp_path / "reg.csv").write_text("\n".join(rows) + "\n")
    status = cli.main(["search", "--grid", str(tmp_path / "grid.toml"), "--data",
                       str(tmp_path / "reg.csv"), "--results", str(tmp_path / "r.jsonl")])
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1
    assert "nncore search does classification only" in err and "need --task" not in err
    assert not (tmp_path / "r.jsonl").exists()


# --- Dask --------------------------------------------------------------------------------------

def test_a_dask_cluster_gives_the_same_trials(sequential, data, tmp_path, capsys):
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        pytest.skip("dask.distributed is not installed (pip install 'nncore[distributed]')")
    X, y, X_val, y_val = data
    np.savez(tmp_path / "data.npz", X_train=X, y_train=y, X_val=X_val, y_val=y_val)
    (tmp_path / "grid.toml").write_text(GRID_TOML)
    # a scheduler and two worker processes, all on loopback
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        address = cluster.scheduler_address
        assert address.startswith("tcp://127.0.0.1:")
        results = grid_search("auto", GRID, data, epochs=EPOCHS, fixed=FIXED, n_jobs=-1,
                              backend="dask", results=tmp_path / "results.jsonl")
        workers = client.run(lambda: __import__("os").getpid())
        # the command connects a client of its own to the scheduler
        status = cli.main(["search", "--grid", str(tmp_path / "grid.toml"), "--data",
                           str(tmp_path / "data.npz"), "--scheduler", address,
                           "--results", str(tmp_path / "cli.jsonl"), "--verbose", "0"])
    assert len(set(workers.values())) == 2
    assert comparable(results) == comparable(sequential)
    assert status == 0 and "4 trials (4 run" in capsys.readouterr().out
    local = grid_search("auto", load_grid(tmp_path / "grid.toml")["grid"], data, epochs=2,
                        fixed={"architecture": "mlp", "depth": 1}, seed=3,
                        results=tmp_path / "local.jsonl")
    by_key = lambda records: sorted(comparable(records), key=lambda r: r["key"])  # noqa: E731
    assert by_key(read_results(tmp_path / "cli.jsonl")) == by_key(local)


def test_the_study_docs_list_every_activation_a_grid_takes():
    """docs/study.md's keys table listed 4 of the 9 activations a grid accepts."""
    from pathlib import Path

    from nncore.activations import names

    text = (Path(__file__).resolve().parents[1] / "docs" / "study.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| `activation`"))
    assert [name for name in names() if f"`{name}`" not in row] == []
