"""Figures of the checks: a Taylor test's residuals against eps, the least-squares runs, and
several Taylor tests side by side.

Each function receives a result object and reads its fields; this module imports none of the
modules that define the results. matplotlib is imported when the first figure is drawn
(through :func:`nncore.plots.pyplot`), never when this module is imported.
"""

import math

import numpy as np

from .._validation import integer
from ..plots import pyplot

__all__ = ["plot_taylor", "plot_least_squares", "plot_results"]


def plot_taylor(result, path, ax, title, roundoff_margin):
    """What :meth:`TaylorResult.plot` draws: both residuals against eps on log-log axes, with
    reference slopes 1 and 2, the round-off zone (``roundoff_margin`` times the measured
    round-off level) and the fitted windows.

    Saves a new figure to ``path`` and returns the path, or draws into ``ax`` and returns it
    (``path`` is then ignored).
    """
    if ax is None:
        if path is None:
            raise ValueError("plot needs a path to save to or an ax to draw into")
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6.4, 4.6), constrained_layout=True)
        _draw_taylor(result, ax, title, roundoff_margin)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path
    _draw_taylor(result, ax, title, roundoff_margin)
    return ax


def _reference_lines(result):
    """``(order, eps, values)`` of the reference slopes: 3x the residual at the middle of
    its fitted window (slope 1 falls back to the smallest usable step), extended into
    the empty margin left of the data, where they are labelled."""
    line_eps = np.append(result.eps, result.eps.min() / 8)
    lines = []
    for order, residual, window in ((1, result.zero, result.window_zero),
                                    (2, result.first, result.window_first)):
        if len(window):
            anchor = window[len(window) // 2]
        elif order == 1 and np.any((residual > 0) & ~result.crossed):
            anchor = np.flatnonzero((residual > 0) & ~result.crossed)[-1]
        else:
            continue
        lines.append((order, line_eps,
                      residual[anchor] * 3 * (line_eps / result.eps[anchor]) ** order))
    return lines


def _draw_taylor(result, ax, title, roundoff_margin):
    eps = result.eps
    symbol = r"f" if result.kind == "gradient" else r"F"
    norm = (r"|", r"|") if result.kind == "gradient" else (r"\|", r"\|")
    linear = r"\varepsilon\, d^{\top}\!g" if result.kind == "gradient" else r"\varepsilon J d"
    labels = (
        rf"zero order ${norm[0]}{symbol}(x+\varepsilon d)-{symbol}(x){norm[1]}$",
        rf"first order ${norm[0]}{symbol}(x+\varepsilon d)-{symbol}(x)-{linear}{norm[1]}$",
    )
    references = _reference_lines(result)
    floor = roundoff_margin * result.noise
    shown_values = [result.zero[result.zero > 0], result.first[result.first > 0], floor]
    shown_values += [values[-1:] for _, _, values in references]
    bottom = np.concatenate(shown_values).min() / 10
    ax.fill_between(eps, bottom, floor, color="0.88", zorder=0,
                    label=f"round-off zone (< {roundoff_margin:g}x round-off level)")
    styles = (dict(marker="o", linestyle="-", color="0.1"),
              dict(marker="s", linestyle="--", color="tab:blue"))
    for residual, window, label, style in zip((result.zero, result.first),
                                              (result.window_zero, result.window_first),
                                              labels, styles):
        shown = np.where(residual > 0, residual, np.nan)
        ax.plot(eps, shown, markerfacecolor="white", markersize=5, label=label, **style)
        if len(window):
            ax.plot(eps[window], shown[window], linestyle="none", marker=style["marker"],
                    color=style["color"], markersize=6)
    if result.crossed.any():
        ax.plot(eps[result.crossed], result.zero[result.crossed], linestyle="none", marker="x",
                color="tab:red", markersize=9, label="crossed a ReLU kink (not used)")
    for order, line_eps, values in references:
        ax.plot(line_eps, values, linestyle=":", color="0.35", linewidth=1.2)
        ax.annotate(f"slope {order}", (line_eps[-1], values[-1]), textcoords="offset points",
                    xytext=(-1, 3), fontsize=8, color="0.2", ha="left", va="bottom")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _sparse_log_ticks(ax)
    ax.set_ylim(bottom=bottom)
    ax.set_xlim(eps.min() / 10, eps.max() * 1.5)
    ax.set_xlabel(r"step $\varepsilon$ (unit direction $d$)")
    ax.set_ylabel("residual")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")


def _sparse_log_ticks(ax):
    """At most about six labelled decades per axis and no minor ticks: readable, and
    cheap to lay out (log axes spanning 15 decades otherwise dominate drawing time)."""
    from matplotlib.ticker import LogLocator, NullLocator

    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(LogLocator(base=10.0, numticks=7))
        axis.set_minor_locator(NullLocator())


def _plot_least_squares_runs(result, runs, title, path):
    """Objective and relative error against iteration for ``runs``, a list of
    ``(run, style, marker)`` (a run is a dict of ``objective``, ``error`` and
    ``iterations_to_tolerance``); ``result`` gives the problem's settings. Saved to ``path``,
    which is returned."""
    plt = pyplot()
    fig, (ax_objective, ax_error) = plt.subplots(1, 2, figsize=(11, 4.2),
                                                 constrained_layout=True)
    for run, style, marker in runs:
        iterations = np.arange(run["objective"].size)
        ax_objective.semilogy(iterations, run["objective"], **style)
        ax_error.semilogy(iterations, run["error"], **style)
        reached = run["iterations_to_tolerance"]
        if reached is not None:
            ax_error.plot(reached, run["error"][reached], marker=marker, color=style["color"],
                          markersize=7, linestyle="none")
            ax_error.annotate(f"{reached} it.", (reached, run["error"][reached]),
                              textcoords="offset points", xytext=(5, 6), fontsize=8)
    ax_error.axhline(result.tolerance, color="0.4", linestyle=":", linewidth=1.2,
                     label=f"tolerance {result.tolerance:g}")
    ax_objective.set_ylabel(r"objective $\|Ax-b\|^2/(2m)$ (optimum 0)")
    ax_error.set_ylabel(r"relative error $\|x - x_{\rm lstsq}\| / \|x_{\rm lstsq}\|$")
    for ax in (ax_objective, ax_error):
        ax.set_xlabel(f"iteration (mini-batch of {result.batch_size})")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    ax_objective.set_title("Objective")
    ax_error.set_title("Distance to numpy.linalg.lstsq")
    fig.suptitle(title)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_least_squares(result, path):
    """What :meth:`LeastSquaresResult.plot` draws: objective and relative error against
    iteration, momentum and plain SGD; saved to ``path``, which is returned."""
    m, n = result.shape
    return _plot_least_squares_runs(
        result,
        [(result.runs["momentum"],
          dict(linestyle="-", color="0.1", label=f"SGD + momentum {result.momentum:g}"), "o"),
         (result.runs["plain"], dict(linestyle="--", color="tab:orange", label="plain SGD"),
          "s")],
        f"SGD on least squares, A {m}x{n}, condition {result.condition:.0f}, "
        f"lr {result.lr:.3g}: momentum vs plain at the same learning rate", path)


def plot_adam_least_squares(result, path):
    """What :meth:`AdamLeastSquaresResult.plot` draws: objective and relative error against
    iteration; saved to ``path``, which is returned."""
    m, n = result.shape
    return _plot_least_squares_runs(
        result,
        [(result.run, dict(linestyle="-", color="tab:blue", label=f"Adam, lr {result.lr:g}"),
          "o")],
        f"Adam on least squares, A {m}x{n}, condition {result.condition:.0f}, "
        f"lr {result.lr:g}, betas {result.betas}", path)


def plot_results(results, path, title=None, columns=4, dpi=100):
    """Draw several Taylor-test results side by side, one panel each, and save the figure.

    Parameters
    ----------
    results : iterable
        Results of any kind; only TaylorResults (gradient and Jacobian tests) are drawn.
    path : str
        Where to save (the format follows the extension).
    title : str, optional
    columns : int >= 1
        Panels per row.
    dpi : int

    Returns
    -------
    str or None
        ``path``, or None when there was nothing to draw (no file is written).
    """
    # a TaylorResult is told by its kind: this module does not import the result classes
    results = [r for r in results if getattr(r, "kind", None) in ("gradient", "jacobian")]
    if not results:
        return None
    columns = min(integer("columns", columns), len(results))
    rows = math.ceil(len(results) / columns)
    plt = pyplot()
    # a fixed layout: a layout engine would measure every tick label of every panel twice
    width, height = 4.6 * columns, 4.0 * rows + 0.5
    fig, axes = plt.subplots(rows, columns, figsize=(width, height), squeeze=False)
    fig.subplots_adjust(left=0.75 / width, right=1 - 0.2 / width, bottom=0.55 / height,
                        top=1 - 0.95 / height, wspace=0.3, hspace=0.95 / 4.0 * 1.6)
    for ax, result in zip(axes.flat, results):
        result.plot(ax=ax)
    for ax in axes.flat[len(results):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, y=1 - 0.15 / height)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
