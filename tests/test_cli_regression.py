"""``nncore train --task regression``: the table, the files and figures of a run, the saved
model's predictions, and one-line errors for bad targets."""

import csv
import os

import numpy as np
import pytest

import nncore as nc
from nncore import cli, datasets

REGRESSION_COLUMNS = ["epoch", "loss", "rmse", "r2", "val_loss", "val_rmse", "val_r2", "lr",
                      "seconds"]


def noisy_sine_csv(path, n=200, seed=0):
    """A 1-D noisy sine, x in [-3, 3], as x,y rows under a header."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3, 3, n)
    np.savetxt(path, np.column_stack([x, np.sin(x) + 0.1 * rng.standard_normal(n)]),
               delimiter=",", header="x,y", comments="")
    return path


def two_output_npz(path, seed=0, **overrides):
    """Three features, two real targets."""
    rng = np.random.default_rng(seed)
    X, X_val = rng.uniform(-1, 1, (160, 3)), rng.uniform(-1, 1, (40, 3))

    def targets(X):
        return np.column_stack([X.sum(axis=1), X[:, 0] * X[:, 1]])

    contents = {"X_train": X, "y_train": targets(X), "X_val": X_val, "y_val": targets(X_val)}
    contents.update(overrides)
    np.savez(path, **contents)
    return path


def train(tmp_path, *argv, model=("--arch", "mlp", "--layers", "8,8")):
    return cli.main(["train", "--task", "regression", *model,
                     "--epochs", "3", "--batch-size", "16", "--verbose", "0",
                     "--out", str(tmp_path), *argv])


def table_row(out, name):
    """The numbers of a row of the printed table ("train" or "validation")."""
    for line in out.splitlines():
        cells = line.split()
        if cells and cells[0] == name:
            return [float(cell) for cell in cells[1:]]
    raise AssertionError(f"no {name!r} row in:\n{out}")


def test_a_regression_run_prints_rmse_and_r2_and_writes_its_figures(tmp_path, capsys):
    data = noisy_sine_csv(tmp_path / "sine.csv")
    assert train(tmp_path, "--data", str(data), "--name", "run") == 0
    out = capsys.readouterr().out
    assert "1 target (regression)" in out
    header = next(line for line in out.splitlines() if "RMSE" in line)
    assert header.split() == ["loss", "RMSE", "R^2"] and "accuracy" not in out

    run = tmp_path / "run"
    assert sorted(os.listdir(run)) == ["checkpoint.npz", "fitted_curve.png", "history.csv",
                                       "learning_curves.png", "model.npz",
                                       "predicted_vs_true.png", "residuals.png", "run.json"]
    for figure in ("fitted_curve", "learning_curves", "predicted_vs_true", "residuals"):
        assert (run / f"{figure}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(run / "history.csv") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == REGRESSION_COLUMNS
        assert [int(row["epoch"]) for row in reader] == [1, 2, 3]

    net = nc.load(run / "model.npz")
    assert net.task == "regression" and net.n_outputs == 1
    X, y, X_val, y_val = datasets.load(data, task="regression")  # the split the run used
    predicted = net.predict(X_val)
    assert predicted.shape == (len(X_val), 1) and predicted.dtype.kind == "f"
    rmse = float(np.sqrt(np.mean((predicted[:, 0].astype(np.float64) - y_val) ** 2)))
    r2 = 1 - np.sum((predicted[:, 0] - y_val) ** 2) / np.sum((y_val - y_val.mean()) ** 2)
    loss, shown_rmse, shown_r2 = table_row(out, "validation")
    assert shown_rmse == pytest.approx(rmse, abs=6e-5)
    assert shown_r2 == pytest.approx(r2, abs=6e-5)
    assert loss == pytest.approx(rmse**2, abs=6e-5)
    assert table_row(out, "train")[1] == pytest.approx(net.evaluate(X, y)["rmse"], abs=6e-5)


def test_the_fitted_curve_names_its_input_after_the_csv_header(tmp_path, monkeypatch):
    from nncore import plots

    plt = plots.pyplot()
    seen = []
    monkeypatch.setattr(plt, "close", seen.append)
    assert train(tmp_path, "--data", str(noisy_sine_csv(tmp_path / "sine.csv")), "--name",
                 "run") == 0
    assert seen[-1].axes[0].get_xlabel() == "input (x)"  # fitted_curve.png, drawn last
    monkeypatch.undo()
    plt.close("all")


@pytest.mark.parametrize("header, extra", [
    ("x,price", []), ("price,x", ["--target", "0"]), ("price,x", ["--target", "price"]),
    ("x,price", ["--target", "-1"]), (None, [])])
def test_the_figures_name_the_target_after_the_csv_header(tmp_path, monkeypatch, header,
                                                          extra):
    """A user trial: on a CSV whose target column is `price` the regression figures said
    "true value" and "target". They take its name when the file has a header (wherever
    the column is, however --target names it), and stay generic without one."""
    from nncore import plots

    rng = np.random.default_rng(0)
    x = rng.uniform(-3, 3, 120)
    columns = [x, np.sin(x)] if header in (None, "x,price") else [np.sin(x), x]
    np.savetxt(tmp_path / "prices.csv", np.column_stack(columns), delimiter=",",
               header=header or "", comments="")
    plt = plots.pyplot()
    drawn = []
    monkeypatch.setattr(plt, "close", drawn.append)
    assert train(tmp_path, "--data", str(tmp_path / "prices.csv"), "--name", "run",
                 *extra) == 0
    monkeypatch.undo()
    plt.close("all")
    labels = [(figure.axes[0].get_xlabel(), figure.axes[0].get_ylabel())
              for figure in drawn[-3:]]  # predicted_vs_true, residuals, fitted_curve
    if header:
        assert labels == [("true price", "predicted price"),
                          ("predicted price", "residual (true - predicted price)"),
                          ("input (x)", "price")]
    else:
        assert labels == [("true value", "predicted value"),
                          ("predicted value", "residual (true - predicted)"),
                          ("input (feature 1)", "target")]


def test_several_named_targets_title_their_panels(tmp_path, monkeypatch):
    from nncore import plots

    plt = plots.pyplot()
    drawn = []
    monkeypatch.setattr(plt, "close", drawn.append)
    y = np.random.default_rng(0).standard_normal((50, 2))
    plots.predicted_vs_true(y, y + 0.1, tmp_path / "p.png", target_names=["price", "rent"])
    plots.residuals(y, y + 0.1, tmp_path / "r.png", target_names=["price", ""])
    monkeypatch.undo()
    plt.close("all")
    assert [(ax.get_title(), ax.get_xlabel()) for ax in drawn[0].axes[:2]] == [
        ("price", "true price"), ("rent", "true rent")]
    assert [(ax.get_title(), ax.get_ylabel()) for ax in drawn[1].axes[:2]] == [
        ("price", "residual (true - predicted price)"),
        ("output 2", "residual (true - predicted)")]  # a blank name: the generic words


def test_two_outputs_from_an_npz_file(tmp_path, capsys):
    data = two_output_npz(tmp_path / "two.npz")
    assert train(tmp_path, "--data", str(data), "--name", "two",
                 model=("--arch", "resnet", "--width", "8", "--depth", "1")) == 0
    out = capsys.readouterr().out
    assert "2 targets (regression)" in out
    run = tmp_path / "two"
    # no fitted curve for 3-D input, no decision boundary for a regression
    assert sorted(os.listdir(run)) == ["checkpoint.npz", "history.csv", "learning_curves.png",
                                       "model.npz", "predicted_vs_true.png", "residuals.png",
                                       "run.json"]
    net = nc.load(run / "model.npz")
    _, _, X_val, y_val = datasets.load(data, task="regression")
    assert net.predict(X_val).shape == (40, 2)
    scores = net.evaluate(X_val, y_val)
    assert table_row(out, "validation") == pytest.approx(
        [scores["loss"], scores["rmse"], scores["r2"]], abs=6e-5)


def test_early_stopping_on_val_loss_and_no_plots_work_for_a_regression(tmp_path, capsys):
    data = noisy_sine_csv(tmp_path / "sine.csv", n=60)
    assert train(tmp_path, "--data", str(data), "--name", "es", "--patience", "1",
                 "--epochs", "40", "--lr", "0.5", "--no-plots") == 0
    out = capsys.readouterr().out
    assert ", 1 feature, 1 target (regression)" in out.splitlines()[0]  # not "1 features"
    assert sorted(os.listdir(tmp_path / "es")) == ["checkpoint.npz", "history.csv",
                                                   "model.npz", "run.json"]
    with open(tmp_path / "es" / "history.csv") as f:
        val_loss = [float(row["val_loss"]) for row in csv.DictReader(f)]
    assert len(val_loss) < 40
    best = int(np.argmin(val_loss)) + 1
    assert f"epochs      {len(val_loss)} (early stop; kept the weights of epoch {best}, the " \
           "best val_loss)" in out
    _, _, X_val, y_val = datasets.load(data, task="regression")
    kept = nc.load(tmp_path / "es" / "model.npz").evaluate(X_val, y_val)["loss"]
    assert kept == pytest.approx(min(val_loss), rel=1e-5)  # the best epoch's weights


def one_line_error(capsys):
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("text, fragments", [
    ("x,y\n1,0.5\n2,nan\n3,1\n4,2\n5,3\n",
     ("bad.csv, line 3", "target (last column) is NaN or infinite")),
    ("x,y\n1,0.5\n2,inf\n3,1\n4,2\n5,3\n", ("bad.csv, line 3", "NaN or infinite", "'inf'")),
    ("x,y\n1,0.5\n2,high\n3,1\n4,2\n5,3\n",
     ("bad.csv, line 3", "target (last column) must be a number", "'high'")),
], ids=["nan", "inf", "string"])
def test_a_bad_regression_target_is_one_line_and_status_2(tmp_path, capsys, text, fragments):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    assert train(tmp_path, "--data", str(path)) == 2
    err = one_line_error(capsys)
    assert err.startswith("nncore train: error: ")
    for fragment in fragments:
        assert fragment in err


def test_a_bad_npz_target_names_the_file_and_the_array(tmp_path, capsys):
    y_val = np.zeros((40, 2))
    y_val[7, 0] = np.nan
    path = two_output_npz(tmp_path / "nan.npz", y_val=y_val)
    assert train(tmp_path, "--data", str(path)) == 2
    err = one_line_error(capsys)
    assert "nan.npz" in err and "y_val contains NaN or infinity" in err and "sample 7" in err


def test_a_regression_file_in_a_classification_run_suggests_the_task(tmp_path, capsys):
    for path in (noisy_sine_csv(tmp_path / "sine.csv"), two_output_npz(tmp_path / "two.npz")):
        status = cli.main(["train", "--data", str(path), "--verbose", "0", "--out",
                           str(tmp_path)])
        assert status == 2
        err = one_line_error(capsys)
        assert path.name in err and "--task regression" in err


def test_the_bundled_sets_refuse_regression_and_the_task_is_a_choice(tmp_path, capsys):
    assert train(tmp_path, "--data", "peaks") == 2
    assert "'peaks' is a bundled classification set" in one_line_error(capsys)
    with pytest.raises(SystemExit) as info:
        cli.main(["train", "--task", "ranking"])
    assert info.value.code == 2
    assert "argument --task: invalid choice" in one_line_error(capsys)


def test_a_course_mat_file_of_one_hot_labels_refuses_regression(tmp_path, capsys):
    """--data peaks --task regression was refused, but the same data as a .mat file trained
    its one-hot labels as 5 regression targets without complaint."""
    X, y, X_val, y_val = datasets.make_gmm(n_train=200, n_val=50)
    path = datasets.save_mat(tmp_path / "course.mat", X, y, X_val, y_val)
    assert train(tmp_path, "--data", str(path), "--name", "run") == 2
    err = one_line_error(capsys)
    assert f"{path} is a classification set (Ct and Cv hold one-hot class labels, 5 " \
           f"classes); regression needs real-valued targets" in err
    assert not (tmp_path / "run").exists()
    assert len(datasets.load(path)[1]) == 200  # a classification set all the same


# --- the regression figures, drawn directly --------------------------------------------------

def test_the_r2_axis_starts_at_minus_one_when_early_epochs_lie_far_below(tmp_path, monkeypatch):
    from nncore import plots

    history = {"epoch": [1, 2, 3], "loss": [90.0, 2.0, 0.5], "r2": [-40.0, 0.2, 0.9],
               "val_loss": [80.0, 1.0, 0.4], "val_r2": [-30.0, 0.5, 0.92]}
    plt = plots.pyplot()
    seen = {}
    monkeypatch.setattr(plt, "close", lambda fig: seen.setdefault("axes", fig.axes))
    plots.learning_curves(history, tmp_path / "curves.png", score="r2",
                          loss_label="mean squared error")
    loss_axis, r2_axis = seen["axes"]
    assert loss_axis.get_ylabel() == "mean squared error"
    assert r2_axis.get_ylim()[0] == -1.0 and "axis from -1" in r2_axis.get_title()
    assert [t.get_text() for t in r2_axis.get_legend().get_texts()] == ["train", "validation"]


def test_a_loss_spanning_more_than_two_decades_gets_a_log_axis(tmp_path, monkeypatch):
    """A diverging run (validation loss 900 against 0.1) flattened every useful epoch on a
    linear loss axis. Log only when every finite loss is positive."""
    from nncore import plots

    plt = plots.pyplot()
    seen = []
    monkeypatch.setattr(plt, "close", seen.append)
    diverging = {"epoch": [1, 2, 3, 4], "loss": [2.0, 0.5, 0.1, 0.1],
                 "val_loss": [2.0, 0.6, 40.0, 900.0], "accuracy": [0.5, 0.8, 0.9, 0.9],
                 "val_accuracy": [0.5, 0.8, 0.4, 0.3]}
    ordinary = {**diverging, "val_loss": [2.1, 0.6, 0.2, float("nan")]}
    zero = {**diverging, "loss": [2.0, 0.5, 0.1, 0.0]}  # a loss of 0 has no logarithm
    for history in (diverging, ordinary, zero):
        plots.learning_curves(history, tmp_path / "curves.png")
    plots.comparison_curves([ordinary, diverging], ["a", "b"], tmp_path / "both.png", "t")
    scales = [(fig.axes[0].get_yscale(), fig.axes[0].get_title()) for fig in seen[:3]]
    assert scales == [("log", "Loss (log scale)"), ("linear", "Loss"), ("linear", "Loss")]
    loss_row = seen[3].axes[:2]  # the top row of the 2 x 2 grid
    assert [ax.get_yscale() for ax in loss_row] == ["log", "log"]
    assert all(ax.get_title().endswith("loss (log scale)") for ax in loss_row)
    monkeypatch.undo()
    plt.close("all")


def test_predicted_vs_true_shows_at_most_four_outputs_and_fitted_curve_needs_1d(tmp_path,
                                                                             monkeypatch):
    from nncore import plots

    rng = np.random.default_rng(0)
    y = rng.standard_normal((50, 6))
    plt = plots.pyplot()
    seen = {}
    monkeypatch.setattr(plt, "close", lambda fig: seen.setdefault("fig", fig))
    plots.predicted_vs_true(y, y + 0.1, tmp_path / "pvt.png", title="six")
    fig = seen["fig"]
    assert len(fig.axes) == 4
    assert fig._suptitle.get_text() == "six (the first 4 of 6 outputs)"  # get_suptitle: 3.8+
    assert [ax.get_title() for ax in fig.axes] == ["output 1", "output 2", "output 3",
                                                   "output 4"]
    assert (tmp_path / "pvt.png").exists()
    net = nc.mlp(2, [4], 1, loss="mse")
    with pytest.raises(ValueError, match="1-D input and one output"):
        plots.fitted_curve(net, rng.standard_normal((10, 2)), rng.standard_normal(10),
                           tmp_path / "curve.png")


@pytest.mark.parametrize("figure", ["residuals", "predicted_vs_true"])
@pytest.mark.parametrize("n_outputs", [1, 2])
def test_the_legend_and_the_scores_lie_beside_the_points_not_on_them(tmp_path, monkeypatch,
                                                                     figure, n_outputs):
    """A user trial: residuals.png's legend (upper left) and RMSE box (lower right) hid
    points, the residuals fill the whole panel. Both now lie right of each panel's axes,
    inside the figure."""
    from nncore import plots

    rng = np.random.default_rng(0)
    y = rng.standard_normal((300, n_outputs))
    plt = plots.pyplot()
    seen = {}
    monkeypatch.setattr(plt, "close", lambda fig: seen.setdefault("fig", fig))
    getattr(plots, figure)(y, y + 0.3 * rng.standard_normal(y.shape), tmp_path / "f.png")
    fig = seen["fig"]
    renderer = fig.canvas.get_renderer()
    assert len(fig.axes) == n_outputs
    for ax in fig.axes:
        frame = ax.get_window_extent(renderer)
        boxes = [ax.get_legend(), *(text for text in ax.texts if "RMSE" in text.get_text())]
        assert len(boxes) == 2
        for box in boxes:
            extent = box.get_window_extent(renderer)
            assert frame.x1 < extent.x0 and extent.x1 <= fig.bbox.width, (frame, extent)
    monkeypatch.undo()
    plt.close("all")


@pytest.mark.parametrize("figure", ["predicted_vs_true", "residuals", "fitted_curve",
                                    "learning_curves"])
def test_a_long_title_is_wrapped_inside_the_figure(tmp_path, monkeypatch, figure):
    """A user trial found "ResNet width 64 depth 4 hidden 64 tanh on reg: predicted vs true
    (validation)" cut off at both edges of the regression figures: every title must lie
    within the figure once drawn."""
    from nncore import plots

    rng = np.random.default_rng(0)
    y = rng.standard_normal(40)
    title = ("ResNet width 64 depth 4 hidden 64 tanh on a_rather_long_data_name: "
             f"{figure.replace('_', ' ')} (validation, 40 rows)")
    plt = plots.pyplot()
    seen = {}
    monkeypatch.setattr(plt, "close", lambda fig: seen.setdefault("fig", fig))
    if figure == "fitted_curve":
        net = nc.mlp(1, [4], 1, loss="mse")
        plots.fitted_curve(net, y[:, None], y, tmp_path / "f.png", title=title)
    elif figure == "learning_curves":
        history = {"epoch": [1, 2], "loss": [1.0, 0.5], "r2": [0.1, 0.5], "val_loss": [0.9, 0.6],
                   "val_r2": [0.2, 0.4]}
        plots.learning_curves(history, tmp_path / "f.png", title=title, score="r2")
    else:
        getattr(plots, figure)(y, y + 0.1, tmp_path / "f.png", title=title)
    fig = seen["fig"]
    renderer = fig.canvas.get_renderer()
    titles = [fig._suptitle] if fig._suptitle is not None else []
    titles += [ax.title for ax in fig.axes if ax.get_title()]
    assert titles
    for text in titles:
        box = text.get_window_extent(renderer)
        assert box.x0 >= 0 and box.x1 <= fig.bbox.width, (text.get_text(), box)
