"""Figures: learning curves and decision boundaries (matplotlib, imported when first used).

Train and validation are told apart without colour (solid line with circles vs dashed line
with squares), so the figures read in greyscale too.
"""

import numpy as np

__all__ = ["learning_curves", "decision_boundary", "pyplot", "whole_epochs", "TRAIN_STYLE",
           "VALIDATION_STYLE"]

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
