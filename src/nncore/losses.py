"""The losses a network can be trained with: one registry entry each.

An entry owns what the rest of nncore needs to know about a loss: the backend function that
computes it and its gradient (the same name in :mod:`nncore.ops` and
:mod:`nncore.reference`), the check of its targets, how many outputs a network needs for
it, what a prediction is, the scores an evaluation reports besides the loss, and a
one-line description. Networks, the training loop and model files look losses up here.

Plain Python and NumPy: the entries name backend functions, they do not import them.
"""

import dataclasses
from typing import Callable

import numpy as np

from . import _validation as v

__all__ = ["Loss", "LOSSES", "get"]


@dataclasses.dataclass(frozen=True)
class Loss:
    """One loss.

    Attributes
    ----------
    name : str
    function : str
        The backend function ``f(outputs, targets, out=None) -> (loss, doutputs)``.
    check_targets : callable
        ``(y, n_samples, n_outputs, name) -> array``: the targets checked and converted.
    min_outputs : int
        The fewest outputs (logits) a network trained with it may have.
    probabilities : str or None
        The backend function that turns outputs into class probabilities, if any.
    predict : callable
        ``outputs -> predictions``.
    scores : callable
        ``(outputs, targets) -> dict`` of the scores reported beside the loss.
    description : str
    """

    name: str
    function: str
    check_targets: Callable
    min_outputs: int
    probabilities: str
    predict: Callable
    scores: Callable
    description: str


def _class_targets(y, n_samples, n_outputs, name="y"):
    return v.class_labels(y, n_samples, n_outputs, name)


def _accuracy(logits, labels):
    return {"accuracy": float(np.mean(logits.argmax(axis=1) == labels))}


LOSSES = {
    entry.name: entry for entry in (
        Loss(name="softmax_cross_entropy", function="softmax_cross_entropy",
             check_targets=_class_targets, min_outputs=2, probabilities="softmax",
             predict=lambda logits: logits.argmax(axis=1), scores=_accuracy,
             description="mean cross-entropy of the softmax of the outputs against "
                         "integer class labels (classification)"),
    )
}


def get(name, argument="loss"):
    """The registry entry of ``name``; a clear ValueError naming ``argument`` otherwise."""
    return LOSSES[v.choice(argument, name, LOSSES)]
