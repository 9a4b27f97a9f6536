"""The results file of a grid search and the results read from it.

One trial a line (JSON lines): each record holds the trial's settings, seeds, status, final
scores and whole per-epoch history (see :func:`nncore.search.grid_search` for the fields).
:func:`read_results` reads a file back; :class:`SearchResults` ranks the trials by a metric
of :data:`METRICS` and prints them as a table.
"""

import json
import os
import warnings
from pathlib import Path

__all__ = ["METRICS", "RECORD_FORMAT", "ResultsWriter", "SearchResults", "canonical",
           "read_results", "score", "value_text"]

#: Metrics a search can rank by (read from the last epoch), and whether larger is better.
METRICS = {"val_accuracy": True, "val_loss": False, "accuracy": True, "loss": False,
           "best_val_accuracy": True}
#: Version of the record layout written to the results file.
RECORD_FORMAT = 1


def canonical(value):
    """Canonical JSON text (sorted keys, no spaces): equal settings give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)



# --------------------------------------------------------------------------------------------
# Results file
# --------------------------------------------------------------------------------------------


def read_results(path, name="results"):
    """Read the records of a results file (JSON lines), skipping damaged lines.

    A line that is not a JSON object (say, the last one, cut short by a crash mid-write)
    is skipped with a warning; the trial it held runs again when the search resumes. A
    file with lines but no trial record at all is not a results file (a data set, a
    script given by mistake): it is refused, so that a search never appends to it.

    Parameters
    ----------
    path : str or os.PathLike
    name : str
        What the messages call the file (``"--results"`` for the command line).

    Returns
    -------
    list of dict
        The records in file order; an absent or empty file gives an empty list.

    Raises
    ------
    ValueError
        If ``path`` is not a file, or a file of lines none of which is a trial record.
    """
    path = Path(path)
    if not path.exists():
        return []
    if not path.is_file():
        raise ValueError(f"{name} {os.fspath(path)!r} is not a file")
    records, damaged = [], []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = None
            if not isinstance(record, dict) or "key" not in record:
                damaged.append(number)
                continue
            records.append(record)
    if damaged and not records:
        raise ValueError(f"{name} {os.fspath(path)!r} exists and is not a results file (no line "
                         f"of it is a trial record); it is left as it is: give a new file, "
                         f"or the results file of a search to resume")
    for number in damaged:
        warnings.warn(f"{path}:{number}: not a trial record; skipped (that trial will run "
                      "again)", stacklevel=2)
    return records


class ResultsWriter:
    """Appends one JSON line per record and flushes it to disk at once."""

    def __init__(self, path):
        self.path = Path(path)
        if self.path.parent != Path(""):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        needs_newline = False
        if self.path.exists() and self.path.stat().st_size:
            with open(self.path, "rb") as handle:
                handle.seek(-1, os.SEEK_END)
                needs_newline = handle.read(1) != b"\n"  # a line cut short by a crash
        self.handle = open(self.path, "a", encoding="utf-8")
        if needs_newline:
            self.handle.write("\n")

    def write(self, record):
        self.handle.write(canonical(record) + "\n")
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def close(self):
        self.handle.close()


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


class SearchResults:
    """The trials of a search, in grid order, with ranking and a text table.

    Attributes
    ----------
    trials : list of dict
        One record per combination, in the grid's order (see :func:`grid_search` for the
        fields).
    metric : str
        What :meth:`ranked` sorts by (a key of :data:`METRICS`).
    grid_keys : list of str
        The keys that vary across the grid.
    path : pathlib.Path
        The results file.
    n_resumed : int
        Trials read back from the file instead of run.
    """

    def __init__(self, trials, metric, grid_keys, path, n_resumed=0):
        self.trials, self.metric, self.grid_keys = list(trials), metric, list(grid_keys)
        self.path, self.n_resumed = path, n_resumed

    def __len__(self):
        return len(self.trials)

    def __iter__(self):
        return iter(self.trials)

    def __getitem__(self, index):
        return self.trials[index]

    def score(self, trial):
        """The trial's value of :attr:`metric` (None for a diverged trial)."""
        return score(trial, self.metric)

    def ranked(self):
        """The trials best first by :attr:`metric`; diverged trials last, ties in grid order."""
        larger_is_better = METRICS[self.metric]

        def order(trial):
            value = self.score(trial)
            if value is None:
                return (1, 0.0)
            return (0, -value if larger_is_better else value)

        return sorted(self.trials, key=order)

    @property
    def best(self):
        """The best trial (None if every trial diverged)."""
        ranked = self.ranked()
        return ranked[0] if ranked and self.score(ranked[0]) is not None else None

    def table(self, top=None):
        """The ranked trials as a text table (the ``top`` best, or all).

        Columns: rank, each grid key, the final validation accuracy and loss, the best
        validation accuracy and its epoch, the final training accuracy, the parameter count
        and the training time.
        """
        rows = self.ranked()[:top] if top else self.ranked()
        header = ["rank", *self.grid_keys, "val_acc", "val_loss", "best_val_acc (epoch)",
                  "train_acc", "params", "time_s"]
        lines = []
        for rank, trial in enumerate(rows, 1):
            final, best = trial["final"], trial["best"]
            cells = [str(rank),
                     *(value_text(trial["params"].get(key)) for key in self.grid_keys)]
            if trial["status"] != "ok":
                cells += [trial["status"], "-"]
            else:
                loss = final["val_loss"]
                cells += [f"{final['val_accuracy']:.4f}",
                          f"{loss:.4f}" if abs(loss) < 1e4 else f"{loss:.3g}"]
            cells.append(f"{best['val_accuracy']:.4f} ({best['epoch']})" if best else "-")
            cells.append(f"{final['accuracy']:.4f}" if final["accuracy"] is not None else "-")
            cells += [f"{trial['n_params']:,}", f"{trial['seconds']:.2f}"]
            lines.append(cells)
        widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
        numeric = [i == 0 or i > len(self.grid_keys) for i in range(len(header))]
        text = []
        for row in [header, *lines]:
            text.append("  ".join(cell.rjust(w) if right else cell.ljust(w)
                                  for cell, w, right in zip(row, widths, numeric)).rstrip())
        text.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(text)

    def __repr__(self):
        best = self.best
        described = f", best {self.metric}={self.score(best):.4f} at {best['params']}" \
            if best else ""
        return f"SearchResults({len(self)} trials{described})"


def score(trial, metric="val_accuracy"):
    """A trial record's value of ``metric`` (None if it diverged or has no value)."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {tuple(METRICS)}, got {metric!r}")
    if trial["status"] != "ok":
        return None
    if metric == "best_val_accuracy":
        return trial["best"]["val_accuracy"] if trial["best"] else None
    return trial["final"][metric]


def value_text(value):
    """A grid value as the table shows it: ``0.01``, ``64``, ``32x32`` for a list of widths."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "x".join(map(str, value)) or "[]"
    return str(value)
