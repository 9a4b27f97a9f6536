"""`nncore experiments --quick`: the study's reports, the figures they link, provenance."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

import nncore as nc
from nncore import cli
from nncore.experiments import QUICK, comparable_mlp_width, standard_or_resnet
from nncore.search import read_results

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: A cell of a report's tables: a percentage, or a number.
PERCENT = r"\d{1,3}\.\d\d%"
NUMBER = r"[\d.e+-]+"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A quick study on the bundled SwissRoll (2-D) and a user's own 5-D .npz file."""
    folder = tmp_path_factory.mktemp("study")
    X, y, X_val, y_val = nc.datasets.make_gmm(n_train=1500, n_val=500, seed=2)
    own = folder / "my-gmm.npz"
    np.savez(own, X_train=X, y_train=y, X_val=X_val, y_val=y_val)
    out = folder / "reports"
    argv = ["experiments", "--data", "swissroll", "--data", str(own), "--quick",
            "--out", str(out), "--seed", "3"]
    status = cli.main(argv)
    return status, out, argv


def test_quick_study_writes_a_report_per_data_set_and_an_index(study):
    status, out, _ = study
    assert status == 0
    assert sorted(p.name for p in out.glob("*.md")) == ["index.md", "my-gmm.md",
                                                       "swissroll.md"]
    index = (out / "index.md").read_text()
    assert "[swissroll](swissroll.md)" in index and "[my-gmm](my-gmm.md)" in index
    assert "Quick run" in index


@pytest.mark.parametrize("name, two_d", [("swissroll", True), ("my-gmm", False)])
def test_report_has_every_section_and_its_figures_exist(study, name, two_d):
    _, out, argv = study
    report = (out / f"{name}.md").read_text()
    headings = re.findall(r"^## (\d)\. ", report, flags=re.MULTILINE)
    assert headings == ["1", "2", "3", "4", "5", "6"]
    figures = re.findall(r"!\[[^\]]+\]\(([^)]+)\)", report)
    expected = {"softmax-curves.png", "softmax-grid.png", "network-curves.png",
                "gradient-tests.png"}
    if two_d:
        expected |= {"boundary-softmax.png", "boundary-standard.png", "boundary-resnet.png"}
    assert {f.split("/")[-1] for f in figures} == expected
    for figure in figures:
        assert (out / figure).read_bytes()[:8] == PNG_SIGNATURE
    if not two_d:
        assert "drawn for 2-D data only" in report
    assert_report_holds_the_results(report, out / name)
    # parameter counts of the two compared networks, and the gradient tests passed
    assert re.search(r"\| standard network \| [\d,]+ \|", report)
    assert re.search(r"\| ResNet \| [\d,]+ \|", report)
    assert "| FAIL" not in report and "PASS" in report
    # provenance: the exact command, seed, versions, machine
    assert "nncore " + " ".join(argv) in report
    assert "- seed: 3" in report and "numpy " + np.__version__ in report
    assert "- machine: CPU:" in report and "cores:" in report


def assert_report_holds_the_results(report, folder):
    """The report's tables hold real numbers, and the best cell is the grid file's best."""
    lines = report.splitlines()
    # the grid's table: 3 learning rates x 2 batch sizes, a percentage in every cell, the
    # best cell in bold, and that cell is the best trial of the grid's results file
    header = lines.index("| learning rate \\ batch size | 32 | 128 |")
    rows = lines[header + 2:header + 5]
    cell = rf"(\*\*)?{PERCENT}(\*\*)?"
    assert [row.split(" | ")[0] for row in rows] == ["| 0.01", "| 0.1", "| 1"], rows
    assert all(re.fullmatch(rf"\| {NUMBER} \| {cell} \| {cell} \|", row) for row in rows), rows
    assert sum(row.count("**") for row in rows) == 2, rows
    trials = read_results(folder / "softmax-grid.jsonl")
    best = max(trials, key=lambda t: t["final"]["val_accuracy"])
    lr, batch_size = best["params"]["lr"], best["params"]["batch_size"]
    bold = f"**{100 * best['final']['val_accuracy']:.2f}%**"
    assert bold in "".join(rows)
    # section 1: softmax regression at that cell, with its train and validation scores
    assert f"at the best cell of the grid in section 2 (learning rate {lr:g}, batch size " \
        f"{batch_size})." in report
    for split in ("train", "validation"):
        assert re.search(rf"^\| {split} \| \d+\.\d{{4}} \| {PERCENT} \|$", report, re.M)
    # section 3: each learning rate's scores, then each architecture's row of results
    for lr in QUICK.network_lrs:
        assert re.search(rf"^\| {lr:g} \| {PERCENT} \| {PERCENT} \|$", report, re.M)
    for model in ("standard network", "ResNet"):
        assert re.search(rf"^\| {model} \| [\d,]+ \| {NUMBER} \| {PERCENT} \| {PERCENT} \| "
                         rf"{PERCENT} \({PERCENT} - {PERCENT}\) \| {NUMBER} \| [\d,]+ \|$",
                         report, re.M), model
    # section 5: a row per network
    assert len(re.findall(r"^\| .+ \| [\d,]+ \| PASS \| ", report, re.M)) == 3


def test_the_index_repeats_each_reports_results(study):
    _, out, _ = study
    index = (out / "index.md").read_text()
    for name in ("swissroll", "my-gmm"):
        report = (out / f"{name}.md").read_text()
        softmax = re.search(rf"^\| validation \| \d+\.\d{{4}} \| ({PERCENT}) \|$", report,
                            re.M).group(1)
        means = [re.search(rf"^\| {model} \| ([\d,]+) \|(?: [^|]+ \|){{3}} ({PERCENT}) ",
                           report, re.M).groups() for model in ("standard network", "ResNet")]
        row = next(line for line in index.splitlines() if line.startswith(f"| [{name}]"))
        assert f"| {softmax} |" in row
        for params, mean in means:
            assert f"| {mean} ({params} params) |" in row
        assert "| pass |" in row


def test_grid_results_are_kept_with_their_curves(study):
    _, out, _ = study
    trials = read_results(out / "swissroll" / "softmax-grid.jsonl")
    assert len(trials) == 6
    assert all(len(t["history"]["val_accuracy"]) == t["epochs_run"] == 8 for t in trials)
    networks = read_results(out / "swissroll" / "network-grid.jsonl")
    assert {t["params"]["architecture"] for t in networks} == {"standard", "resnet"}


@pytest.mark.parametrize("n_in, n_classes, width, depth", [
    (2, 5, 64, 4), (5, 5, 16, 2), (2, 2, 32, 1), (10, 3, 8, 6)])
def test_the_compared_networks_have_comparable_parameter_counts(n_in, n_classes, width,
                                                                depth):
    standard = standard_or_resnet(n_in, n_classes, 0, "standard", width, depth)
    resnet = standard_or_resnet(n_in, n_classes, 0, "resnet", width, depth)
    assert len(standard.layers) == 1 + 2 * depth + 1  # as deep, without skip connections
    gap = abs(standard.n_params - resnet.n_params)
    assert gap / resnet.n_params < 0.1
    chosen = comparable_mlp_width(n_in, n_classes, width, depth)
    assert chosen == standard.layers[0].n_out
    for other in (chosen - 1, chosen + 1):  # no other width comes closer
        neighbour = nc.mlp(n_in, [other] * (1 + 2 * depth), n_classes)
        assert abs(neighbour.n_params - resnet.n_params) >= gap


@pytest.mark.parametrize("argv, message", [
    (["experiments", "--data", "nosuch"], "neither 'all', a bundled set"),
    (["experiments", "--n-jobs", "0"], "argument --n-jobs: must be a nonzero integer"),
    (["experiments", "--seed", "-2"], "argument --seed: must be >= 0"),
    (["experiments", "--data", "peaks", "--data", "peaks"], "same report peaks.md"),
])
def test_bad_arguments_give_one_line_and_status_2(argv, message, tmp_path, capsys):
    try:
        status = cli.main(argv + ["--out", str(tmp_path / "reports")])
    except SystemExit as exit_:
        status = exit_.code
    assert status == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err and "Traceback" not in err
    assert not (tmp_path / "reports").exists()


def test_real_valued_targets_say_the_study_does_classification_only(tmp_path, capsys):
    """It said 'real-valued targets need --task regression', an option it lacks."""
    rows = ["a,b,y"] + [f"{i},{i % 7},{i / 7:.3f}" for i in range(1, 60)]
    (tmp_path / "reg.csv").write_text("\n".join(rows) + "\n")
    status = cli.main(["experiments", "--quick", "--quiet", "--data", str(tmp_path / "reg.csv"),
                       "--out", str(tmp_path / "reports")])
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1
    assert "the study (nncore experiments) does classification only" in err
    assert "need --task" not in err


def test_refused_data_leave_no_empty_folder(tmp_path, capsys):
    """Refused data left an empty OUT/<name>/ (and OUT itself when it was new)."""
    rows = ["a,b,y"] + [f"{i},{i % 7},{i / 7:.3f}" for i in range(1, 60)]
    (tmp_path / "reg.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "kept").mkdir()
    for out in (tmp_path / "new" / "reports", tmp_path / "kept"):
        assert cli.main(["experiments", "--quick", "--quiet", "--data",
                         str(tmp_path / "reg.csv"), "--out", str(out)]) == 2
        assert "classification only" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
    assert os.listdir(tmp_path / "kept") == []


def test_the_study_names_the_boundary_axes_after_a_csv_header(tmp_path, monkeypatch):
    """The study's decision boundaries said "feature 1/2" for a CSV whose header names the
    columns (nncore train's already took the names)."""
    from nncore import plots

    X, y, _, _ = nc.datasets.make_gmm(n_train=200, n_val=10, seed=1)
    rows = ["petal length,petal width,kind"] + [f"{a},{b},{c}" for (a, b), c
                                                in zip(X[:, :2].tolist(), y.tolist())]
    (tmp_path / "iris.csv").write_text("\n".join(rows) + "\n")
    seen, draw = [], plots.decision_boundary

    def recording(*args, feature_names=None, **kwargs):
        seen.append(feature_names)
        return draw(*args, feature_names=feature_names, **kwargs)

    monkeypatch.setattr(plots, "decision_boundary", recording)
    assert cli.main(["experiments", "--quick", "--quiet", "--data", str(tmp_path / "iris.csv"),
                     "--out", str(tmp_path / "out")]) == 0
    assert seen and all(list(names) == ["petal length", "petal width"] for names in seen)


def test_a_refused_data_set_among_several_stops_the_study_before_anything_is_written(
        tmp_path, capsys):
    """A folder of two CSVs, the second refused: the first's report used to be written
    and the index not; now nothing is written at all."""
    X, y, _, _ = nc.datasets.make_gmm(n_train=200, n_val=10, seed=1)
    (tmp_path / "data").mkdir()
    rows = ["a,b,kind"] + [f"{a},{b},{c}" for (a, b), c in zip(X[:, :2].tolist(), y.tolist())]
    (tmp_path / "data" / "a_good.csv").write_text("\n".join(rows) + "\n")
    rows = ["a,b,y"] + [f"{i},{i % 7},{i / 7:.3f}" for i in range(1, 60)]
    (tmp_path / "data" / "b_real.csv").write_text("\n".join(rows) + "\n")
    assert cli.main(["experiments", "--quick", "--quiet", "--data", str(tmp_path / "data"),
                     "--out", str(tmp_path / "out")]) == 2
    assert "classification only" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_out_must_be_a_folder(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert cli.main(["experiments", "--quick", "--out", str(tmp_path / "file")]) == 2
    assert "is not a folder" in capsys.readouterr().err


# --- the study's modules (their place among nncore's layers: tests/test_architecture.py) ---

def test_importing_the_study_does_not_import_matplotlib():
    code = ("import sys, nncore, nncore.experiments, nncore.report, nncore.search\n"
            "print('matplotlib' in sys.modules)")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
                            check=True).stdout
    assert output.strip() == "False"
