"""The losses a network can be trained with: one registry entry each.

An entry owns what the rest of nncore needs to know about a loss: the backend function that
computes it and its gradient (the same name in :mod:`nncore.ops` and
:mod:`nncore.reference`), the check of its targets, how many outputs a network needs for
it, what a prediction is, the scores an evaluation reports besides the loss, and a
one-line description. Networks, the training loop and model files look losses up here.

Plain Python and NumPy: the entries name backend functions, they do not import them.
"""

import dataclasses
import math
from typing import Callable

import numpy as np

from . import _validation as v

__all__ = ["Loss", "LOSSES", "get", "for_task", "TASKS"]

#: What a network can learn, and the loss each task trains with by default.
TASKS = {"classification": "softmax_cross_entropy", "regression": "mean_squared_error"}


@dataclasses.dataclass(frozen=True)
class Loss:
    """One loss.

    Attributes
    ----------
    name : str
    task : {"classification", "regression"}
    function : str
        The backend function ``f(outputs, targets, out=None, sample_weight=None) -> (loss,
        doutputs)`` (with weights: their weighted mean over the rows); the fused training
        step computes the same loss by name.
    check_targets : callable
        ``(y, n_samples, n_outputs, dtype, name) -> array``: the targets checked and
        converted to what the backend function takes.
    min_outputs : int
        The fewest outputs a network trained with it may have.
    probabilities : str or None
        The backend function that turns outputs into class probabilities, if any.
    predict : callable
        ``outputs -> predictions``.
    score_names : tuple of str
        The scores reported beside the loss, in History and by ``evaluate``.
    scores : callable
        ``(outputs, targets) -> dict`` of those scores, exactly.
    epoch_scores : callable
        ``(mean_loss, n_correct, n_samples, target_variance) -> dict``: the same scores for
        an epoch of training, from what the fused step accumulates.
    description : str
    """

    name: str
    task: str
    function: str
    check_targets: Callable
    min_outputs: int
    probabilities: str
    predict: Callable
    score_names: tuple
    scores: Callable
    epoch_scores: Callable
    description: str


def _class_targets(y, n_samples, n_outputs, dtype, name="y"):
    return v.class_labels(y, n_samples, n_outputs, name)


def _accuracy(logits, labels):
    return {"accuracy": float(np.mean(logits.argmax(axis=1) == labels))}


def _epoch_accuracy(mean_loss, n_correct, n_samples, target_variance):
    return {"accuracy": n_correct / n_samples}


def _value_targets(y, n_samples, n_outputs, dtype, name="y"):
    return v.regression_targets(y, n_samples, n_outputs, dtype, name)


def _rmse_and_r2(outputs, targets):
    """RMSE over all elements, and R^2 as scikit-learn's ``r2_score`` (the mean over outputs
    of 1 - SSE / SST; an output whose targets are constant scores 1 if predicted exactly,
    else 0)."""
    outputs, targets = np.asarray(outputs, np.float64), np.asarray(targets, np.float64)
    squared = (outputs - targets) ** 2
    sse = squared.sum(axis=0)
    sst = ((targets - targets.mean(axis=0)) ** 2).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(sst > 0, 1 - sse / np.where(sst > 0, sst, 1), np.where(sse == 0, 1.0, 0.0))
    return {"rmse": float(np.sqrt(squared.mean())), "r2": float(r2.mean())}


def _epoch_rmse_and_r2(mean_loss, n_correct, n_samples, target_variance):
    # from the epoch's running mean squared error; R^2 against the mean variance of the
    # outputs (equal to scikit-learn's for one output; variance-weighted for several)
    r2 = 1 - mean_loss / target_variance if target_variance > 0 else math.nan
    return {"rmse": math.sqrt(mean_loss), "r2": r2}


LOSSES = {
    entry.name: entry for entry in (
        Loss(name="softmax_cross_entropy", task="classification",
             function="softmax_cross_entropy", check_targets=_class_targets, min_outputs=2,
             probabilities="softmax", predict=lambda logits: logits.argmax(axis=1),
             score_names=("accuracy",), scores=_accuracy, epoch_scores=_epoch_accuracy,
             description="mean cross-entropy of the softmax of the outputs against "
                         "integer class labels (classification)"),
        Loss(name="mean_squared_error", task="regression", function="mean_squared_error",
             check_targets=_value_targets, min_outputs=1, probabilities=None,
             predict=lambda outputs: outputs, score_names=("rmse", "r2"),
             scores=_rmse_and_r2, epoch_scores=_epoch_rmse_and_r2,
             description="mean over all elements of the squared difference between the "
                         "outputs and real-valued targets (regression)"),
    )
}


#: Short names people use (PyTorch's and Keras's): name -> registry name.
ALIASES = {"mse": "mean_squared_error", "cross_entropy": "softmax_cross_entropy"}


def get(name, argument="loss"):
    """The registry entry of ``name`` (or of an alias such as "mse"); a clear ValueError
    naming ``argument`` otherwise."""
    name = ALIASES.get(name, name) if isinstance(name, str) else name
    return LOSSES[v.choice(argument, name, (*LOSSES, *ALIASES))]


def for_task(task):
    """The loss a network of ``task`` ("classification" or "regression") trains with."""
    return get(TASKS[v.choice("task", task, TASKS)])
