"""SGD with momentum, Nesterov and weight decay, and learning-rate schedules.

The update is PyTorch's rule, applied in one pass over the network's flat parameter buffer
by :func:`nncore.ops.sgd_momentum_`::

    g = grad + weight_decay * param
    velocity = momentum * velocity + g
    param -= lr * (g + momentum * velocity if nesterov else velocity)

Schedules give the learning rate of each epoch (counted from 0).

Optimizers are registered in :data:`OPTIMIZERS` (name -> class) and schedules in
:data:`SCHEDULES` (name -> factory); an optimizer class owns its hyperparameters and their
checks, its state (what a checkpoint saves), its update through the backend, and the
arguments it hands the fused training step. See docs/extending.md for adding one.
"""

import math

import numpy as np

from . import _validation as v
from . import ops

__all__ = ["Optimizer", "SGD", "OPTIMIZERS", "constant", "step_decay", "exponential",
           "cosine", "SCHEDULES", "make_schedule"]


def constant():
    """lr(epoch) = lr0."""
    return lambda lr0, epoch: lr0


def step_decay(step_size=10, gamma=0.5):
    """lr(epoch) = lr0 * gamma ** (epoch // step_size)."""
    step_size = v.integer("step_size", step_size)
    gamma = v.real_number("gamma", gamma, minimum=0.0)
    return lambda lr0, epoch: lr0 * gamma ** (epoch // step_size)


def exponential(gamma=0.95):
    """lr(epoch) = lr0 * gamma ** epoch."""
    gamma = v.real_number("gamma", gamma, minimum=0.0)
    return lambda lr0, epoch: lr0 * gamma ** epoch


def cosine(epochs, lr_min=0.0):
    """Cosine annealing from lr0 at epoch 0 to ``lr_min`` at epoch ``epochs``."""
    epochs = v.integer("epochs", epochs)
    lr_min = v.real_number("lr_min", lr_min, minimum=0.0)

    def schedule(lr0, epoch):
        t = min(epoch, epochs) / epochs
        return lr_min + 0.5 * (lr0 - lr_min) * (1 + math.cos(math.pi * t))

    return schedule


#: Schedules by name: name -> factory.
SCHEDULES = {"constant": constant, "step": step_decay, "exponential": exponential,
             "cosine": cosine}


def check_schedule(schedule, name="schedule"):
    """``schedule`` if it is None, a callable or a name in :data:`SCHEDULES`."""
    if schedule is not None and not callable(schedule) and (
            not isinstance(schedule, str) or schedule not in SCHEDULES):
        raise ValueError(
            f"{name} must be None, a callable or one of {tuple(SCHEDULES)}, got {schedule!r}")
    return schedule


def make_schedule(schedule, epochs):
    """The function ``(lr0, epoch) -> lr`` for a (checked) ``schedule`` setting: ``None`` is
    constant, a name takes its factory's defaults ("cosine" anneals over ``epochs``), and
    a callable is used as it is."""
    if schedule is None or schedule == "constant":
        return constant()
    if schedule == "cosine":
        return cosine(max(epochs, 1))
    if isinstance(schedule, str):
        return SCHEDULES[schedule]()
    return schedule


#: Optimizers by name: name -> class. A subclass of Optimizer with a ``name`` registers itself.
OPTIMIZERS = {}


class Optimizer:
    """The interface of an optimizer, and what every optimizer shares: the learning rate,
    its schedule, and the state arrays it keeps beside the parameters.

    A subclass sets ``name`` (its registry key), ``description`` and ``state_names`` (the
    arrays shaped like the parameters it keeps, e.g. ``("velocity",)``), checks its
    hyperparameters in its constructor, and implements :meth:`step`,
    :meth:`step_arguments` and :meth:`config`.
    """

    name = None
    description = None
    state_names = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.name is not None:
            OPTIMIZERS[cls.name] = cls

    def __init__(self, lr, schedule):
        self.lr = v.real_number("lr", lr, minimum=0.0, exclusive_minimum=True)
        self.schedule = check_schedule(schedule)
        self.current_lr = self.lr
        self._schedule_fn = None
        for state_name in self.state_names:
            setattr(self, state_name, None)

    def start(self, params, epochs):
        """Prepare for ``epochs`` epochs on ``params``: state arrays that do not match the
        parameters start at zero; others carry on (a second ``fit`` continues)."""
        for state_name in self.state_names:
            array = getattr(self, state_name)
            if array is None or array.shape != params.shape or array.dtype != params.dtype:
                setattr(self, state_name, np.zeros_like(params))
        self._schedule_fn = make_schedule(self.schedule, epochs)

    def state(self):
        """``{name: array}`` of the state arrays (what a checkpoint saves)."""
        return {state_name: getattr(self, state_name) for state_name in self.state_names}

    def lr_at(self, epoch):
        """Set and return the learning rate of ``epoch`` (after :meth:`start`)."""
        if self._schedule_fn is None:
            raise RuntimeError(f"call {type(self).__name__}.start(params, epochs) before lr_at "
                               "(fit does this)")
        lr = float(self._schedule_fn(self.lr, epoch))
        if not math.isfinite(lr) or lr < 0:
            raise ValueError(f"the schedule gave an invalid learning rate {lr} at epoch {epoch}")
        self.current_lr = lr
        return lr

    def _schedule_name(self):
        return self.schedule if isinstance(self.schedule, (str, type(None))) else "custom"

    def __repr__(self):
        return (f"{type(self).__name__}("
                + ", ".join(f"{k}={val!r}" for k, val in self.config().items()) + ")")


class SGD(Optimizer):
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

    name = "sgd"
    description = "SGD with momentum, Nesterov and weight decay (PyTorch's rule)"
    state_names = ("velocity",)

    def __init__(self, lr=0.02, momentum=0.9, nesterov=False, weight_decay=0.0, schedule=None):
        super().__init__(lr, schedule)
        _, self.momentum, self.nesterov, self.weight_decay = v.sgd_hyperparameters(
            self.lr, momentum, nesterov, weight_decay)

    def step_arguments(self):
        """The hyperparameters the fused training step takes after the learning rate."""
        return self.momentum, self.nesterov, self.weight_decay

    def step(self, params, grads, backend=ops):
        """One in-place update of the flat ``params`` from the flat ``grads`` with the
        current learning rate; ``backend`` is :mod:`nncore.ops` or :mod:`nncore.reference`."""
        backend.sgd_momentum_(params, grads, self.velocity, self.current_lr,
                              *self.step_arguments())

    def config(self):
        return {"lr": self.lr, "momentum": self.momentum, "nesterov": self.nesterov,
                "weight_decay": self.weight_decay, "schedule": self._schedule_name()}
