"""`nncore experiments --quick`: the study's reports, the figures they link, provenance."""

import re

import numpy as np
import pytest

import nncore as nc
from nncore import cli
from nncore.experiments import comparable_mlp_width, standard_or_resnet
from nncore.search import read_results

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


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
    # the grid's table: 3 learning rates x 2 batch sizes, the best cell in bold
    assert "| learning rate \\ batch size | 32 | 128 |" in report
    assert report.count("**") >= 2
    # parameter counts of the two compared networks, and the gradient tests passed
    assert re.search(r"\| standard network \| [\d,]+ \|", report)
    assert re.search(r"\| ResNet \| [\d,]+ \|", report)
    assert "| FAIL" not in report and "PASS" in report
    # provenance: the exact command, seed, versions, machine
    assert "nncore " + " ".join(argv) in report
    assert "- seed: 3" in report and "numpy " + np.__version__ in report
    assert "- machine: CPU:" in report and "cores:" in report


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


def test_out_must_be_a_folder(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert cli.main(["experiments", "--quick", "--out", str(tmp_path / "file")]) == 2
    assert "is not a folder" in capsys.readouterr().err
