"""Figures: learning curves, decision boundaries, and the study's grid heatmap and model
comparison (matplotlib, imported when the first figure is drawn).

Train and validation are told apart without colour (solid line with circles vs dashed line
with squares), so the figures read in greyscale too.
"""

import numpy as np

__all__ = ["learning_curves", "comparison_curves", "decision_boundary", "heatmap", "pyplot",
           "whole_epochs", "TRAIN_STYLE", "VALIDATION_STYLE"]

#: Line styles of every train/validation figure of nncore (they differ in greyscale too).
TRAIN_STYLE = {"linestyle": "-", "marker": "o", "color": "0.15", "markersize": 3}
VALIDATION_STYLE = {"linestyle": "--", "marker": "s", "color": "tab:orange", "markersize": 3}


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (imported on first use)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def whole_epochs(ax):
    """Ticks of an epoch axis at whole numbers only (no "epoch 1.5")."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def learning_curves(history, path, title="Learning curves", percent=False):
    """Loss and accuracy per epoch, train and validation, side by side; saved to ``path``.

    ``percent`` shows accuracy in percent instead of as a fraction.
    """
    plt = pyplot()
    epochs = history["epoch"]
    scale, accuracy_label = (100, "accuracy (%)") if percent else \
        (1, "accuracy (fraction correct)")
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for ax, key, label, factor in ((ax_loss, "loss", "cross-entropy loss (nats)", 1),
                                   (ax_acc, "accuracy", accuracy_label, scale)):
        ax.plot(epochs, factor * np.asarray(history[key], dtype=float), label="train",
                **TRAIN_STYLE)
        val = factor * np.asarray(history["val_" + key], dtype=float)
        if val.size and not np.isnan(val).all():
            ax.plot(epochs, val, label="validation", **VALIDATION_STYLE)
        ax.set_xlabel("epoch")
        whole_epochs(ax)
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend()
    ax_loss.set_title("Loss")
    ax_acc.set_title("Accuracy")
    fig.suptitle(title)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def comparison_curves(histories, labels, path, title):
    """Loss (top) and accuracy (bottom) per epoch, one column per model, shared y axes.

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
            ax.set_title(f"{label}: {'loss' if key == 'loss' else 'accuracy'}", fontsize=10)
    fig.suptitle(title)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def decision_boundary(network, X, y, path, title="Decision boundary", max_points=3000,
                      resolution=300, seed=0):
    """Predicted class over the plane of 2-D data, with (a sample of) the points on top."""
    plt = pyplot()
    X = np.asarray(X, dtype=float)
    y = np.asarray(y)
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"decision boundaries need 2-D data, got X of shape {X.shape}")
    pad = 0.05 * (X.max(axis=0) - X.min(axis=0))
    lo, hi = X.min(axis=0) - pad, X.max(axis=0) + pad
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], resolution),
                         np.linspace(lo[1], hi[1], resolution))
    grid = np.column_stack([gx.ravel(), gy.ravel()])
    predicted = network.predict(grid).reshape(gx.shape)
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
                   linewidths=0.2, marker=markers[c % len(markers)], label=f"class {c}")
    ax.set_xlabel("feature 1")
    ax.set_ylabel("feature 2")
    ax.set_title(title)
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
    ax.set_title(title, fontsize=10)
    bar = fig.colorbar(image, ax=ax)
    bar.set_label("final validation accuracy (%)")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
