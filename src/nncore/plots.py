"""Figures: learning curves, decision boundaries, a regression's predicted-vs-true, residual
and fitted-curve plots, and the study's grid heatmap and model comparison (matplotlib,
imported when the first figure is drawn).

Train and validation are told apart without colour (solid line with circles vs dashed line
with squares), so the figures read in greyscale too.
"""

import numpy as np

__all__ = ["learning_curves", "comparison_curves", "decision_boundary", "heatmap", "pyplot",
           "predicted_vs_true", "residuals", "fitted_curve", "whole_epochs", "SCORES",
           "TRAIN_STYLE", "VALIDATION_STYLE", "KEPT_EPOCH_STYLE", "LOG_LOSS_SPAN"]

#: Line styles of every train/validation figure of nncore (they differ in greyscale too).
TRAIN_STYLE = {"linestyle": "-", "marker": "o", "color": "0.15", "markersize": 3}
VALIDATION_STYLE = {"linestyle": "--", "marker": "s", "color": "tab:orange", "markersize": 3}
#: The vertical line at the epoch whose weights early stopping kept.
KEPT_EPOCH_STYLE = {"linestyle": ":", "color": "tab:green", "linewidth": 1.8}

#: How the figures name a History score: key -> (panel title, axis label).
SCORES = {
    "accuracy": ("Accuracy", "accuracy (fraction correct)"),
    "r2": ("$R^2$", "$R^2$ = 1 - SSE / SST (1 is a perfect fit)"),
    "rmse": ("RMSE", "root-mean-square error"),
}
#: A score axis is cut off here when early epochs fall far below it (R^2 can be -100).
_SCORE_FLOOR = {"r2": -1.0}
#: A loss axis is logarithmic when its largest value is more than this times its smallest
#: (a diverging run, 900 against 0.1, would flatten every useful epoch on a linear axis).
LOG_LOSS_SPAN = 100.0


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (imported on first use)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _wrapped(fig, title, fontsize=12, share=1.0):
    """``title`` broken into lines that fit ``share`` of the figure's width (a character is
    taken as 0.6 of the font size: DejaVu Sans averages about 0.5), so a long network or
    data name is never cut off at the figure's edges. An axes' title gets the share of the
    width its axes has, about 0.75 beside a colour bar, a legend or the axis labels."""
    import textwrap

    width = max(20, int(share * fig.get_figwidth() * 72 / (0.6 * fontsize)))
    return "\n".join(textwrap.fill(line, width) for line in title.split("\n"))


def _column_name(names, j):
    """Column ``j``'s (0-based) name in ``names`` (a CSV header's), None without one."""
    if names is not None and j < len(names) and str(names[j]).strip():
        return str(names[j])
    return None


def _feature_label(feature_names, j):
    """How an axis names feature ``j`` (0-based): its name from ``feature_names`` (a CSV
    header's), else "feature j+1"."""
    return _column_name(feature_names, j) or f"feature {j + 1}"


def whole_epochs(ax):
    """Ticks of an epoch axis at whole numbers only (no "epoch 1.5")."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _log_scale_if_wide(ax, *curves):
    """A logarithmic y axis for ``ax`` when the finite values of ``curves`` are all positive
    and span more than :data:`LOG_LOSS_SPAN`; returns whether it is one."""
    values = np.concatenate([np.asarray(curve, dtype=float).ravel() for curve in curves])
    values = values[np.isfinite(values)]
    if values.size and values.min() > 0 and values.max() > LOG_LOSS_SPAN * values.min():
        ax.set_yscale("log")
        return True
    return False


def learning_curves(history, path, title="Learning curves", percent=False, score="accuracy",
                    loss_label="cross-entropy loss (nats)", kept_epoch=None):
    """The loss and a score per epoch, train and validation, side by side; saved to
    ``path``.

    ``score`` is a History score (a key of :data:`SCORES`: "accuracy" for a classifier,
    "r2" or "rmse" for a regression) and ``loss_label`` names the loss on its axis
    ("mean squared error" for a regression). ``percent`` shows accuracy in percent instead
    of as a fraction. An R^2 axis starts at -1 when early epochs lie far below, and says so;
    the loss axis is logarithmic when the losses span more than :data:`LOG_LOSS_SPAN`, and
    says so. ``kept_epoch`` (early stopping's best epoch, whose weights the network kept) is marked
    by a vertical line on both panels.
    """
    plt = pyplot()
    epochs = history["epoch"]
    score_title, score_label = SCORES.get(score, (score, score))
    scale = 1
    if percent and score == "accuracy":
        scale, score_label = 100, "accuracy (%)"
    fig, (ax_loss, ax_score) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for ax, key, label, factor in ((ax_loss, "loss", loss_label, 1),
                                   (ax_score, score, score_label, scale)):
        train = factor * np.asarray(history[key], dtype=float)
        ax.plot(epochs, train, label="train", **TRAIN_STYLE)
        val = factor * np.asarray(history["val_" + key], dtype=float)
        if val.size and not np.isnan(val).all():
            ax.plot(epochs, val, label="validation", **VALIDATION_STYLE)
        if kept_epoch is not None:
            ax.axvline(kept_epoch, **KEPT_EPOCH_STYLE,
                       label=f"weights kept (epoch {kept_epoch})")
        ax.set_xlabel("epoch")
        whole_epochs(ax)
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend()
    floor = _SCORE_FLOOR.get(score)
    values = np.concatenate([np.asarray(history[score], float),
                             np.asarray(history["val_" + score], float)])
    values = values[np.isfinite(values)]
    if floor is not None and values.size and values.min() < floor:
        top = max(values.max(), floor + 0.1)
        ax_score.set_ylim(floor, top + 0.05 * (top - floor))
        score_title += f" (axis from {floor:g}; early epochs lie below)"
    log_loss = _log_scale_if_wide(ax_loss, history["loss"], history["val_loss"])
    ax_loss.set_title("Loss (log scale)" if log_loss else "Loss")
    ax_score.set_title(score_title)
    fig.suptitle(_wrapped(fig, title))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _output_columns(y_true, y_pred):
    """Targets and predictions as float ``(n, k)`` arrays of one shape."""
    y_true = np.asarray(y_true, dtype=float)
    y_pred = np.asarray(y_pred, dtype=float)
    y_true = y_true.reshape(len(y_true), -1)
    y_pred = y_pred.reshape(len(y_pred), -1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"targets {y_true.shape} and predictions {y_pred.shape} differ in shape")
    return y_true, y_pred


def _output_panels(plt, n_outputs, max_panels, title, target_names=None):
    """A row of one panel per output shown, each titled by its name in ``target_names``
    (or "output j") when there are several, their ticks few enough not to collide."""
    from matplotlib.ticker import MaxNLocator

    shown = min(n_outputs, max_panels)
    # 1.7 in of each panel's width for its legend and scores, right of its axes
    fig, axes = plt.subplots(1, shown, figsize=(6.5 * shown + 0.8, 4.6), squeeze=False,
                             constrained_layout=True)
    if n_outputs > shown:
        title += f" (the first {shown} of {n_outputs} outputs)"
    fig.suptitle(_wrapped(fig, title))
    for j, ax in enumerate(axes[0]):
        if n_outputs > 1:
            ax.set_title(_column_name(target_names, j) or f"output {j + 1}", fontsize=10)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
        ax.yaxis.set_major_locator(MaxNLocator(nbins=6))
    return fig, axes[0]


def _fit_text(true, predicted):
    sse = float(((true - predicted) ** 2).sum())
    sst = float(((true - true.mean()) ** 2).sum())
    rmse = np.sqrt(sse / len(true))
    r2 = 1 - sse / sst if sst > 0 else float("nan")
    return f"RMSE {rmse:.4g}\n$R^2$ {r2:.4f}\n{len(true):,} points"


def predicted_vs_true(y_true, y_pred, path, title="Predicted vs true", max_panels=4,
                      max_points=3000, seed=0, target_names=None):
    """Predicted against true values, one panel per output (up to ``max_panels``), with
    the identity line (a perfect prediction) and each output's RMSE and R^2; saved to
    ``path``. ``y_true`` and ``y_pred`` are ``(n,)`` or ``(n, k)``; at most ``max_points``
    points are drawn (a seeded sample), the scores use all of them. ``target_names`` (a
    CSV header's target column) name the axes: "true price", else "true value"."""
    plt = pyplot()
    y_true, y_pred = _output_columns(y_true, y_pred)
    n_outputs = y_true.shape[1]
    fig, axes = _output_panels(plt, n_outputs, max_panels, title, target_names)
    shown = np.random.default_rng(seed).permutation(len(y_true))[:max_points]
    for j, ax in enumerate(axes):
        true, predicted = y_true[:, j], y_pred[:, j]
        ax.scatter(true[shown], predicted[shown], s=9, color="tab:orange", marker="s",
                   edgecolors="k", linewidths=0.2, alpha=0.7, label="validation point")
        low = min(true.min(), predicted.min())
        high = max(true.max(), predicted.max())
        pad = 0.03 * (high - low or 1.0)
        line = [low - pad, high + pad]
        ax.plot(line, line, color="0.15", linestyle="--", linewidth=1.2,
                label="identity (predicted = true)")
        ax.set_xlim(line)
        ax.set_ylim(line)
        ax.set_aspect("equal")
        what = _column_name(target_names, j) or "value"
        ax.set_xlabel(f"true {what}")
        ax.set_ylabel(f"predicted {what}")
        _finish_output_panel(ax, true, predicted)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _finish_output_panel(ax, true, predicted):
    """The grid, and right of one output's axes (outside: inside they hid points) its
    legend at the top and its RMSE/R^2 box at the bottom."""
    ax.text(1.03, 0.0, _fit_text(true, predicted), transform=ax.transAxes, ha="left",
            va="bottom", fontsize=9, bbox={"facecolor": "white", "alpha": 0.8,
                                           "edgecolor": "0.7"})
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0, fontsize=8)


def residuals(y_true, y_pred, path, title="Residuals", max_panels=4, max_points=3000, seed=0,
              target_names=None):
    """Residuals (true - predicted) against the predicted value, one panel per output (up
    to ``max_panels``), with the zero line; saved to ``path``. A good fit leaves a band
    centred on zero with no trend or funnel. ``target_names`` as for
    :func:`predicted_vs_true`."""
    plt = pyplot()
    y_true, y_pred = _output_columns(y_true, y_pred)
    n_outputs = y_true.shape[1]
    fig, axes = _output_panels(plt, n_outputs, max_panels, title, target_names)
    shown = np.random.default_rng(seed).permutation(len(y_true))[:max_points]
    for j, ax in enumerate(axes):
        true, predicted = y_true[:, j], y_pred[:, j]
        residual = true - predicted
        ax.scatter(predicted[shown], residual[shown], s=9, color="tab:orange", marker="s",
                   edgecolors="k", linewidths=0.2, alpha=0.7, label="validation point")
        ax.axhline(0.0, color="0.15", linestyle="--", linewidth=1.2, label="zero residual")
        name = _column_name(target_names, j)
        ax.set_xlabel(f"predicted {name or 'value'}")
        ax.set_ylabel(f"residual (true - predicted{' ' + name if name else ''})")
        _finish_output_panel(ax, true, predicted)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def fitted_curve(network, X, y, path, title="Fitted curve", X_val=None, y_val=None,
                 resolution=500, max_points=3000, seed=0, feature_names=None,
                 target_names=None):
    """For 1-D input and one output: the data as points (training, and validation if
    given) and the network's prediction over a dense grid spanning them; saved to
    ``path``. ``feature_names`` and ``target_names`` (a CSV header's) name the input
    and the target axis."""
    plt = pyplot()
    sets = [("training point", X, y, {"color": "0.45", "marker": "o", "s": 8, "alpha": 0.5})]
    if X_val is not None:
        sets.append(("validation point", X_val, y_val,
                     {"color": "tab:orange", "marker": "s", "s": 10, "alpha": 0.8,
                      "edgecolors": "k", "linewidths": 0.2}))
    sets = [(label, np.asarray(Xs, dtype=float), np.asarray(ys, dtype=float), style)
            for label, Xs, ys, style in sets]
    for _, Xs, ys, _ in sets:
        if Xs.ndim != 2 or Xs.shape[1] != 1 or ys.reshape(len(ys), -1).shape[1] != 1:
            raise ValueError(f"a fitted curve needs 1-D input and one output, got X of shape "
                             f"{Xs.shape} and y of shape {ys.shape}")
    inputs = np.concatenate([Xs[:, 0] for _, Xs, _, _ in sets])
    grid = np.linspace(inputs.min(), inputs.max(), resolution)
    curve = np.asarray(network.predict(grid[:, None]), dtype=float).reshape(-1)
    fig, ax = plt.subplots(figsize=(8, 4.8), constrained_layout=True)
    rng = np.random.default_rng(seed)
    for label, Xs, ys, style in sets:
        shown = rng.permutation(len(Xs))[:max_points]
        ax.scatter(Xs[shown, 0], ys.reshape(-1)[shown], label=label, **style)
    ax.plot(grid, curve, color="tab:blue", linewidth=2.2, label="network prediction")
    ax.set_xlabel(f"input ({_feature_label(feature_names, 0)})")
    ax.set_ylabel(_column_name(target_names, 0) or "target")
    ax.set_title(_wrapped(fig, title, share=0.75))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def comparison_curves(histories, labels, path, title):
    """Loss (top) and accuracy (bottom) per epoch, one column per model, shared y axes;
    the loss axes are logarithmic when the losses span more than :data:`LOG_LOSS_SPAN`.

    Parameters
    ----------
    histories : list of History or dict
    labels : list of str
        Column titles.
    path : str or os.PathLike
    title : str

    Returns
    -------
    path
    """
    plt = pyplot()
    columns = len(histories)
    fig, axes = plt.subplots(2, columns, figsize=(5.2 * columns, 7), sharey="row",
                             squeeze=False, constrained_layout=True)
    log_loss = False
    for ax in axes[0]:  # one scale for the shared row
        log_loss = _log_scale_if_wide(ax, *(h[key] for h in histories
                                            for key in ("loss", "val_loss")))
    for column, (history, label) in enumerate(zip(histories, labels)):
        epochs = history["epoch"]
        for row, (key, scale, unit) in enumerate((("loss", 1, "cross-entropy loss (nats)"),
                                                  ("accuracy", 100, "accuracy (%)"))):
            ax = axes[row, column]
            ax.plot(epochs, [scale * v for v in history[key]], label="train", **TRAIN_STYLE)
            ax.plot(epochs, [scale * v for v in history["val_" + key]], label="validation",
                    **VALIDATION_STYLE)
            ax.set_xlabel("epoch")
            if column == 0:
                ax.set_ylabel(unit)
            ax.tick_params(labelleft=True)
            whole_epochs(ax)
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
            what = ("loss (log scale)" if log_loss else "loss") if key == "loss" \
                else "accuracy"
            ax.set_title(f"{label}: {what}", fontsize=10)
    fig.suptitle(_wrapped(fig, title))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def decision_boundary(network, X, y, path, title="Decision boundary", max_points=3000,
                      resolution=300, seed=0, feature_names=None):
    """Predicted class over the plane of 2-D data, with (a sample of) the points on top.
    ``y`` holds the network's labels (``network.classes``: integers, strings, ...);
    ``feature_names`` (a CSV header's) name the axes, else "feature 1" and "feature 2"."""
    plt = pyplot()
    X = np.asarray(X, dtype=float)
    y = network.encode_labels(y)  # class indices: colours and markers go by index
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"decision boundaries need 2-D data, got X of shape {X.shape}")
    pad = 0.05 * (X.max(axis=0) - X.min(axis=0))
    lo, hi = X.min(axis=0) - pad, X.max(axis=0) + pad
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], resolution),
                         np.linspace(lo[1], hi[1], resolution))
    grid = np.column_stack([gx.ravel(), gy.ravel()])
    predicted = network.logits(grid).argmax(axis=1).reshape(gx.shape)
    n_classes = network.n_classes
    from matplotlib.colors import ListedColormap

    # the first n colours of a qualitative palette (resampling tab10 would blur neighbours)
    palette = plt.get_cmap("tab10" if n_classes <= 10 else "tab20").colors
    cmap = ListedColormap([palette[c % len(palette)] for c in range(n_classes)])
    fig, ax = plt.subplots(figsize=(7.5, 6), constrained_layout=True)
    ax.contourf(gx, gy, predicted, levels=np.arange(n_classes + 1) - 0.5, cmap=cmap, alpha=0.35)
    ax.contour(gx, gy, predicted, levels=np.arange(n_classes) + 0.5, colors="k",
               linewidths=0.6)
    rng = np.random.default_rng(seed)
    shown = rng.permutation(len(X))[:max_points]
    markers = "os^Dv<>pP*"
    for c in range(n_classes):
        points = X[shown][y[shown] == c]
        ax.scatter(points[:, 0], points[:, 1], s=8, color=cmap(c), edgecolors="k",
                   linewidths=0.2, marker=markers[c % len(markers)],
                   label=f"class {network.classes[c]}")
    ax.set_xlabel(_feature_label(feature_names, 0))
    ax.set_ylabel(_feature_label(feature_names, 1))
    ax.set_title(_wrapped(fig, title, share=0.75))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", markerscale=1.5)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def heatmap(cells, lrs, batch_sizes, path, title, best=None):
    """Final validation accuracy over learning rate (rows) x batch size (columns).

    Parameters
    ----------
    cells : dict
        ``(lr, batch_size) -> accuracy`` (fraction), or None for a diverged trial.
    lrs, batch_sizes : sequence
        Row and column values, in display order.
    path : str or os.PathLike
    title : str
    best : tuple, optional
        The ``(lr, batch_size)`` cell to outline.

    Returns
    -------
    path
    """
    plt = pyplot()
    values = np.array([[cells.get((lr, bs)) if cells.get((lr, bs)) is not None else np.nan
                        for bs in batch_sizes] for lr in lrs], dtype=float) * 100
    fig, ax = plt.subplots(figsize=(1.15 * len(batch_sizes) + 3.2, 0.55 * len(lrs) + 2.2),
                           constrained_layout=True)
    finite = values[np.isfinite(values)]
    low, high = (finite.min(), finite.max()) if finite.size else (0.0, 100.0)
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5
    cmap = plt.get_cmap("viridis").with_extremes(bad="0.85")
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=low, vmax=high,
                      aspect="auto", origin="upper")
    for i in range(len(lrs)):
        for j in range(len(batch_sizes)):
            value = values[i, j]
            if np.isfinite(value):
                # light text on the dark end of viridis, dark text on the light end
                shade = (value - low) / (high - low)
                ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=9,
                        color="white" if shade < 0.6 else "black")
            else:
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///",
                                           edgecolor="0.5", linewidth=0))
                ax.text(j, i, "diverged", ha="center", va="center", fontsize=8, color="0.1")
    if best is not None and best[0] in lrs and best[1] in batch_sizes:
        i, j = list(lrs).index(best[0]), list(batch_sizes).index(best[1])
        ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red",
                                   linewidth=2.5))
        title += "\n(red box: the best cell)"
    ax.set_xticks(range(len(batch_sizes)), [str(bs) for bs in batch_sizes])
    ax.set_yticks(range(len(lrs)), [f"{lr:g}" for lr in lrs])
    ax.set_xlabel("batch size (samples per SGD step)")
    ax.set_ylabel("learning rate (initial, cosine decay)")
    ax.set_title(_wrapped(fig, title, 10, share=0.75), fontsize=10)
    bar = fig.colorbar(image, ax=ax)
    bar.set_label("final validation accuracy (%)")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
