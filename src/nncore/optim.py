"""SGD with momentum, Nesterov and weight decay, and learning-rate schedules.

The update is PyTorch's rule, applied in one pass over the network's flat parameter buffer
by :func:`nncore.ops.sgd_momentum_`::

    g = grad + weight_decay * param
    velocity = momentum * velocity + g
    param -= lr * (g + momentum * velocity if nesterov else velocity)

Schedules give the learning rate of each epoch (counted from 0).
"""

import math

import numpy as np

from . import _validation as v
from . import ops

__all__ = ["SGD", "constant", "step_decay", "exponential", "cosine", "SCHEDULES"]


def constant():
    """lr(epoch) = lr0."""
    return lambda lr0, epoch: lr0


def step_decay(step_size=10, gamma=0.5):
    """lr(epoch) = lr0 * gamma ** (epoch // step_size)."""
    step_size = int(step_size)
    if step_size < 1:
        raise ValueError(f"step_size must be >= 1, got {step_size}")
    gamma = v.real_number("gamma", gamma, minimum=0.0)
    return lambda lr0, epoch: lr0 * gamma ** (epoch // step_size)


def exponential(gamma=0.95):
    """lr(epoch) = lr0 * gamma ** epoch."""
    gamma = v.real_number("gamma", gamma, minimum=0.0)
    return lambda lr0, epoch: lr0 * gamma ** epoch


def cosine(epochs, lr_min=0.0):
    """Cosine annealing from lr0 at epoch 0 to ``lr_min`` at epoch ``epochs``."""
    epochs = int(epochs)
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    lr_min = v.real_number("lr_min", lr_min, minimum=0.0)

    def schedule(lr0, epoch):
        t = min(epoch, epochs) / epochs
        return lr_min + 0.5 * (lr0 - lr_min) * (1 + math.cos(math.pi * t))

    return schedule


#: Schedules by name, for the command line: name -> factory.
SCHEDULES = {"constant": constant, "step": step_decay, "exponential": exponential,
             "cosine": cosine}


class SGD:
    """Mini-batch SGD with momentum (PyTorch's rule, see the module docstring).

    Parameters
    ----------
    lr : float > 0
    momentum : float >= 0
    nesterov : bool
    weight_decay : float >= 0
        L2 penalty added to the gradient (applies to biases too, as in PyTorch).
    schedule : None, str or callable
        ``None``/"constant", "step", "exponential", "cosine" (default arguments; "cosine"
        needs the number of epochs, set by ``fit``), or a callable ``(lr0, epoch) -> lr``.
    """

    def __init__(self, lr=0.02, momentum=0.9, nesterov=False, weight_decay=0.0, schedule=None):
        self.lr = v.real_number("lr", lr, minimum=0.0)
        if self.lr == 0:
            raise ValueError("lr must be > 0, got 0.0")
        self.momentum = v.real_number("momentum", momentum, minimum=0.0)
        self.weight_decay = v.real_number("weight_decay", weight_decay, minimum=0.0)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov must be True or False, got {nesterov!r}")
        if nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        self.nesterov = bool(nesterov)
        if schedule is not None and not callable(schedule) and schedule not in SCHEDULES:
            raise ValueError(
                f"schedule must be None, a callable or one of {tuple(SCHEDULES)}, got {schedule!r}"
            )
        self.schedule = schedule
        self.velocity = None
        self.current_lr = self.lr
        self._schedule_fn = None

    def start(self, params, epochs):
        """Prepare for ``epochs`` epochs on ``params``: the velocity starts at zero."""
        if self.velocity is None or self.velocity.shape != params.shape \
                or self.velocity.dtype != params.dtype:
            self.velocity = np.zeros_like(params)
        schedule = self.schedule
        if schedule is None or schedule == "constant":
            self._schedule_fn = constant()
        elif schedule == "cosine":
            self._schedule_fn = cosine(max(epochs, 1))
        elif isinstance(schedule, str):
            self._schedule_fn = SCHEDULES[schedule]()
        else:
            self._schedule_fn = schedule

    def lr_at(self, epoch):
        """Set and return the learning rate of ``epoch`` (after :meth:`start`)."""
        if self._schedule_fn is None:
            raise RuntimeError("call SGD.start(params, epochs) before lr_at (fit does this)")
        lr = float(self._schedule_fn(self.lr, epoch))
        if not math.isfinite(lr) or lr < 0:
            raise ValueError(f"the schedule gave an invalid learning rate {lr} at epoch {epoch}")
        self.current_lr = lr
        return lr

    def step(self, params, grads, backend=ops):
        """One in-place update of the flat ``params`` from the flat ``grads``.

        ``backend`` is :mod:`nncore.ops` (the kernel) or :mod:`nncore.reference`.
        """
        backend.sgd_momentum_(params, grads, self.velocity, self.current_lr, self.momentum,
                              self.nesterov, self.weight_decay)

    def config(self):
        schedule = self.schedule if isinstance(self.schedule, (str, type(None))) else "custom"
        return {"lr": self.lr, "momentum": self.momentum, "nesterov": self.nesterov,
                "weight_decay": self.weight_decay, "schedule": schedule}

    def __repr__(self):
        return "SGD(" + ", ".join(f"{k}={val!r}" for k, val in self.config().items()) + ")"
