"""The study's Markdown: a report per data set and the index of a run.

:func:`render` turns one :class:`nncore.experiments.StudyResult` into the text of
``OUT/<name>.md``; :func:`render_index` sums up several in ``OUT/index.md``. Both are pure
functions of what they are given (the results and the paths of the figures drawn from
them): no training, no files read or written, no clock read.
"""

import dataclasses
import math
from pathlib import Path

import numpy as np

from .results import score

__all__ = ["ARCHITECTURE_LABELS", "pct", "render", "render_index"]

#: How the report names the two architectures compared.
ARCHITECTURE_LABELS = {"standard": "standard network", "resnet": "ResNet"}

_ARCHITECTURES = ("standard", "resnet")


def render(result, figures):
    """The Markdown report of one data set.

    Parameters
    ----------
    result : nncore.experiments.StudyResult
    figures : dict
        Figure key (``"softmax_curves"``, ``"softmax_heatmap"``, ``"network_curves"``,
        ``"boundary_softmax"``, ``"boundary_standard"``, ``"boundary_resnet"``,
        ``"gradient_tests"``) -> its path relative to the report's folder. A missing key
        leaves an empty line where the figure would be.

    Returns
    -------
    str
    """
    sections = (_introduction, _softmax_section, _grid_section, _comparison_section,
                _boundaries_section, _gradient_tests_section, _provenance_section)
    lines = []
    for section in sections:
        lines += section(result, figures)
    return "\n".join(lines)


def render_index(results, command, quick, seconds):
    """The Markdown summary of a run: one row per data set, then the command and total time.

    Parameters
    ----------
    results : list of nncore.experiments.StudyResult
    command : str
    quick : bool
    seconds : float
        The run's total time.

    Returns
    -------
    str
    """
    rows = []
    for result in results:
        dataset, softmax = result.dataset, result.softmax
        rows.append([f"[{dataset.name}]({dataset.name}.md)",
                     f"{dataset.n_train:,} / {dataset.n_val:,}",
                     pct(softmax.val["accuracy"]),
                     f"lr {softmax.lr:g}, batch {softmax.batch_size}",
                     *(f"{pct(_mean_val_accuracy(result.runs[a]))} "
                       f"({result.runs[a][0].n_params:,} params)" for a in _ARCHITECTURES),
                     "pass" if _checks_passed(result) else "**not passed**",
                     f"{result.seconds:.0f}"])
    lines = ["# nncore study: summary", ""]
    if quick:
        lines += ["> **Quick run**: the numbers only show that the study runs.", ""]
    lines += [_md_table(["data set", "train / validation", "softmax regression",
                         "best softmax cell", "standard network (mean over seeds)",
                         "ResNet (mean over seeds)", "gradient tests", "time (s)"], rows,
                        [False, True, True, False, True, True, False, True]),
              "", "Validation accuracy throughout.", "", "```", command, "```",
              "", f"Total time {seconds:.1f} s.", ""]
    return "\n".join(lines)


def pct(value, digits=2):
    """A fraction as a percentage with ``digits`` decimals; ``-`` for None or NaN."""
    return "-" if value is None or not math.isfinite(value) else f"{100 * value:.{digits}f}%"


# --------------------------------------------------------------------------------------------
# The sections of a report, each a list of lines
# --------------------------------------------------------------------------------------------


def _introduction(result, figures):
    dataset = result.dataset
    lines = [f"# nncore study: {dataset.name}", ""]
    described_source = (f"the bundled `{dataset.source}` set "
                        f"(`nncore.datasets.load({dataset.source!r})`)"
                        if dataset.bundled else f"the file `{dataset.source}`")
    lines.append(f"Data: {described_source}: {dataset.n_train_all:,} training and "
                 f"{dataset.n_val:,} validation samples, {dataset.n_in} features, "
                 f"{dataset.n_classes} classes.")
    if dataset.n_train < dataset.n_train_all:
        lines.append(f"This run trained on a random subset of {dataset.n_train:,} training "
                     f"samples (seed {result.seed}); validation uses all {dataset.n_val:,}.")
    if result.quick:
        lines += ["", "> **Quick run** (`--quick`): a training subset, small networks and few "
                  "epochs, to check that the study runs. Its numbers say nothing about the "
                  "methods; run without `--quick` for the study."]
    lines += ["", "All accuracies are on the validation set. Learning rates and batch sizes "
              "are chosen on that same set (the course data has no separate test set), so the "
              "best scores are slightly optimistic. For scale: always predicting the most "
              f"frequent class scores {pct(dataset.chance)} there.", ""]
    return lines


def _softmax_section(result, figures):
    s, softmax = result.settings, result.softmax
    return ["## 1. Softmax regression by SGD", "",
            f"One linear layer into the softmax, trained by mini-batch SGD with momentum "
            f"{s.momentum:g} and a {s.schedule} learning-rate schedule for "
            f"{s.softmax_epochs} epochs, at the best cell of the grid in section 2 "
            f"(learning rate {softmax.lr:g}, batch size {softmax.batch_size}).", "",
            _md_table(["", "loss (nats)", "accuracy"],
                      [["train", f"{softmax.train['loss']:.4f}",
                        pct(softmax.train["accuracy"])],
                       ["validation", f"{softmax.val['loss']:.4f}",
                        pct(softmax.val["accuracy"])]], [False, True, True]),
            "", f"Training took {softmax.seconds:.3g} s"
            + (" and reproduced the grid's trial of that cell exactly." if softmax.reproduced
               else "."), "",
            _link(figures, "softmax_curves", "softmax regression learning curves"), ""]


def _grid_section(result, figures):
    s, grid, name = result.settings, result.softmax_grid, result.dataset.name
    lrs, batch_sizes = list(s.softmax_lrs), list(s.softmax_batch_sizes)
    cells = {(t["params"]["lr"], t["params"]["batch_size"]): t for t in grid}
    best = grid.best
    rows = []
    for lr in lrs:
        row = [f"{lr:g}"]
        for bs in batch_sizes:
            trial = cells[lr, bs]
            text = pct(score(trial)) if trial["status"] == "ok" else "diverged"
            row.append(f"**{text}**" if trial is best else text)
        rows.append(row)
    n_diverged = sum(t["status"] != "ok" for t in grid)
    lines = ["## 2. Learning rate x batch size for softmax regression", "",
             f"{len(grid)} trials ({len(lrs)} learning rates x {len(batch_sizes)} "
             f"batch sizes), {s.softmax_epochs} epochs each, run by `nncore.search."
             f"grid_search` in {result.softmax_grid_seconds:.1f} s (n_jobs={result.n_jobs}). "
             f"Final validation accuracy; the best cell in bold"
             + (f"; {n_diverged} trial(s) diverged" if n_diverged else "") + ". Every trial's "
             f"per-epoch curves are in [`{name}/softmax-grid.jsonl`]({name}/softmax-grid.jsonl).",
             "",
             _md_table(["learning rate \\ batch size", *map(str, batch_sizes)], rows,
                       [False] + [True] * len(batch_sizes)), ""]
    scores = [score(t) for t in grid if score(t) is not None]
    if scores:
        lines.append(f"Across the grid the final validation accuracy ranges from "
                     f"{pct(min(scores))} to {pct(max(scores))} "
                     f"({100 * (max(scores) - min(scores)):.1f} percentage points)."
                     + _edge_note("learning rate", best["params"]["lr"], lrs)
                     + _edge_note("batch size", best["params"]["batch_size"], batch_sizes))
    lines += ["", _link(figures, "softmax_heatmap", "heatmap of the grid"), ""]
    return lines


def _comparison_section(result, figures):
    s, name, runs, seeds = result.settings, result.dataset.name, result.runs, result.seeds
    lines = ["## 3. A standard network vs a ResNet", "",
             f"- **ResNet**: a Dense layer lifts the input to width {s.width}, then "
             f"{s.depth} residual blocks `x + {s.activation}(x W1^T + b1) W2^T` "
             f"({s.width} units inside), then the linear softmax head: "
             f"{runs['resnet'][0].n_params:,} parameters.",
             f"- **Standard network**: the same depth without skip connections: "
             f"{1 + 2 * s.depth} Dense {s.activation} layers of width {result.mlp_width} "
             f"(the width whose parameter count is closest), then the head: "
             f"{runs['standard'][0].n_params:,} parameters.", "",
             f"Both train by SGD with momentum {s.momentum:g}, {s.schedule} schedule, batch "
             f"size {s.network_batch_size}, {s.network_epochs} epochs, float32. Each "
             f"architecture's learning rate is the best of "
             f"{', '.join(f'{lr:g}' for lr in s.network_lrs)} (a grid search of "
             f"{len(result.network_grid)} trials, {result.network_grid_seconds:.1f} s, final "
             f"validation accuracy below; curves in [`{name}/network-grid.jsonl`]"
             f"({name}/network-grid.jsonl)):", ""]
    lr_cells = {(t["params"]["architecture"], t["params"]["lr"]): t
                for t in result.network_grid}
    lines += [_md_table(["learning rate", "standard network", "ResNet"],
                        [[f"{lr:g}", *(pct(score(lr_cells[a, lr])) if
                                       lr_cells[a, lr]["status"] == "ok" else "diverged"
                                       for a in _ARCHITECTURES)]
                         for lr in s.network_lrs], [False, True, True]), ""]
    notes = "".join(_edge_note(f"{ARCHITECTURE_LABELS[a]}'s learning rate", result.best_lrs[a],
                               s.network_lrs) for a in _ARCHITECTURES)
    if notes:
        lines += [notes.strip(), ""]
    table_rows = []
    for architecture in _ARCHITECTURES:
        seed_runs = runs[architecture]
        accuracies = [run.val["accuracy"] for run in seed_runs]
        seconds = [run.seconds for run in seed_runs]
        steps = len(seed_runs[0].history) * math.ceil(result.dataset.n_train
                                                      / s.network_batch_size)
        diverged = sum(run.diverged is not None for run in seed_runs)
        table_rows.append([
            ARCHITECTURE_LABELS[architecture], f"{seed_runs[0].n_params:,}",
            f"{result.best_lrs[architecture]:g}", pct(seed_runs[0].train["accuracy"]),
            pct(accuracies[0]),
            f"{pct(float(np.mean(accuracies)))} ({pct(min(accuracies))} - "
            f"{pct(max(accuracies))})" if len(seed_runs) > 1 else pct(accuracies[0]),
            f"{np.mean(seconds):.3g}", f"{steps / seconds[0]:,.0f}"
            + (f" ({diverged} diverged)" if diverged else "")])
    lines += [f"Trained with seeds {', '.join(map(str, seeds))} at those learning rates "
              f"(seed {seeds[0]} in the first columns and the figures):", "",
              _md_table(["model", "parameters", "learning rate",
                         f"train accuracy (seed {seeds[0]})",
                         f"validation accuracy (seed {seeds[0]})",
                         f"validation accuracy, mean (min - max) of {len(seeds)} seeds",
                         "training time (s, mean)", f"steps/s (seed {seeds[0]})"],
                        table_rows, [False] + [True] * 7),
              "", "Training time is the wall-clock time of `fit` on one BLAS thread, "
              "including the scoring of the validation set after every epoch.", "",
              _link(figures, "network_curves", "standard network vs ResNet curves"), ""]
    return lines


def _boundaries_section(result, figures):
    lines = ["## 4. Decision boundaries", ""]
    if result.dataset.n_in == 2:
        lines += ["The predicted class over the plane, with (a sample of) the validation "
                  "points on top.", ""]
        for key, alt in (("boundary_softmax", "softmax regression"),
                         ("boundary_standard", "standard network"),
                         ("boundary_resnet", "ResNet")):
            lines += [_link(figures, key, f"decision boundary of the {alt}"), ""]
    else:
        lines += [f"Not drawn: the data has {result.dataset.n_in} features, and a decision "
                  "boundary is drawn for 2-D data only.", ""]
    return lines


def _gradient_tests_section(result, figures):
    lines = ["## 5. Gradient tests of the networks used", "",
             "Each trained network is copied to float64 and its backward pass checked at its "
             "trained weights on 128 validation samples: a Taylor test of the loss along a "
             "random unit direction in parameter space (the zero-order residual must shrink "
             "with order 1, the first-order one with order 2), and a Jacobian-transpose test "
             "of the backward pass against the Jacobian-vector product `Network.jvp`. "
             "`nncore gradcheck` checks every layer kind the same way (see "
             "docs/verification.md in nncore's repository).", ""]
    rows = []
    for taylor, transpose in result.checks:
        zero, first = taylor.orders
        first_text = "round-off (linear)" if taylor.exact else f"{first:.2f}"
        rows.append([taylor.name.split(":")[0], f"{taylor.size:,}", taylor.verdict,
                     f"{zero:.2f}" if math.isfinite(zero) else "-", first_text,
                     transpose.verdict, f"{transpose.discrepancy:.1e}"])
    lines += [_md_table(["network", "parameters", "Taylor test", "order (zero)",
                         "order (first)", "transpose test", "transpose discrepancy"], rows,
                        [False, True, False, True, True, False, True]), "",
              _link(figures, "gradient_tests", "Taylor tests of the networks' gradients"),
              ""]
    return lines


def _provenance_section(result, figures):
    made, seeds = result.provenance, result.seeds
    return ["## 6. How this report was made", "",
            "```", made.command, "```", "",
            f"- seed: {result.seed} (the grids derive each trial's seeds from it and the "
            f"trial's settings; the comparison trains with seeds {', '.join(map(str, seeds))})",
            f"- settings: {'quick' if result.quick else 'full'} study "
            f"({_settings_text(result.settings)})",
            f"- data fingerprint (training and validation arrays as loaded): "
            f"`{result.dataset.fingerprint}`",
            f"- written {made.written:%Y-%m-%d %H:%M UTC}, in {result.seconds:.1f} s",
            "- versions: " + ", ".join(f"{k} {v}" for k, v in made.versions.items()),
            "- machine: " + ", ".join(f"{k}: {v}" for k, v in made.machine.items()), ""]


# --------------------------------------------------------------------------------------------
# Pieces
# --------------------------------------------------------------------------------------------


def _md_table(header, rows, right=None):
    right = right or [False] * len(header)
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---:" if r else "---" for r in right) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _link(figures, key, alt):
    path = figures.get(key)
    if path is None:
        return ""
    return f"![{alt}]({Path(path).as_posix()})"


def _edge_note(what, value, values):
    """A sentence warning that the best value is at the end of the range tried."""
    values = sorted(values)
    if len(values) < 3 or value not in (values[0], values[-1]):
        return ""
    end = "smallest" if value == values[0] else "largest"
    return (f" The best {what}, {value:g}, is the {end} tried: a wider grid might find "
            "a better one.")


def _settings_text(settings):
    return ", ".join(f"{field.name}={getattr(settings, field.name)!r}"
                     for field in dataclasses.fields(settings))


def _mean_val_accuracy(runs):
    return float(np.mean([run.val["accuracy"] for run in runs]))


def _checks_passed(result):
    return all(taylor.passed and transpose.passed for taylor, transpose in result.checks)
