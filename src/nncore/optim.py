"""Optimizers (SGD with momentum, Adam, AdamW) and learning-rate schedules.

Each update is PyTorch's rule, applied in one pass over the network's flat parameter buffer.
SGD (:func:`nncore.ops.sgd_momentum_`)::

    g = grad + weight_decay * param
    velocity = momentum * velocity + g
    param -= lr * (g + momentum * velocity if nesterov else velocity)

Adam and AdamW (:func:`nncore.ops.adam_`; ``t`` counts the updates from 1)::

    if AdamW: param *= 1 - lr * weight_decay; g = grad
    else:     g = grad + weight_decay * param
    exp_avg += (g - exp_avg) * (1 - beta1)
    exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * g * g
    param -= lr / (1 - beta1 ** t) * exp_avg / (sqrt(exp_avg_sq) / sqrt(1 - beta2 ** t) + eps)

Schedules give the learning rate of each epoch (counted from 0).

Optimizers are registered in :data:`OPTIMIZERS` (name -> class) and schedules in
:data:`SCHEDULES` (name -> factory); an optimizer class owns its hyperparameters and their
checks, its state (what a checkpoint saves), its update through the backend, and the
update it hands the fused training step. See docs/extending.md for adding one.
"""

import math

import numpy as np

from . import _validation as v
from . import ops

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "OPTIMIZERS", "constant", "step_decay",
           "exponential", "cosine", "SCHEDULES", "make_schedule"]


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


def schedule_uses_epochs(schedule):
    """Whether the (checked) ``schedule`` setting depends on the number of epochs of the run
    (make_schedule's "cosine" anneals over them)."""
    return schedule == "cosine"


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
    its schedule, the state arrays it keeps beside the parameters and its counters.

    A subclass sets ``name`` (its registry key), ``description``, ``update_kind`` (the
    fused step's update it uses, a key of :data:`nncore._validation.UPDATE_KINDS`),
    ``state_names`` (the arrays shaped like the parameters it keeps, e.g. ``("velocity",)``,
    in the order the fused step takes them) and ``counter_names`` (integers it keeps, e.g.
    Adam's ``("step_count",)``); it checks its hyperparameters in its constructor, and
    implements :meth:`step`, :meth:`step_arguments`, :meth:`step_update` and :meth:`config`.
    A checkpoint saves :meth:`state` and :meth:`counters`; :meth:`load_state` restores them.
    """

    name = None
    description = None
    update_kind = None
    state_names = ()
    counter_names = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__ and cls.name is not None:
            OPTIMIZERS[cls.name] = cls

    def __init__(self, lr, schedule):
        self.lr = v.real_number("lr", lr, minimum=0.0, exclusive_minimum=True)
        self.schedule = check_schedule(schedule)
        self.current_lr = self.lr
        self._schedule_fn = None
        for state_name in self.state_names:
            setattr(self, state_name, None)
        for counter_name in self.counter_names:
            setattr(self, counter_name, 0)

    def start(self, params, epochs):
        """Prepare for ``epochs`` epochs on ``params``: if a state array does not match the
        parameters, every state array and counter starts afresh (zero); otherwise they
        carry on (a second ``fit`` continues)."""
        if any(array is None or array.shape != params.shape or array.dtype != params.dtype
               for array in self.state().values()):
            for state_name in self.state_names:
                setattr(self, state_name, np.zeros_like(params))
            for counter_name in self.counter_names:
                setattr(self, counter_name, 0)
        self._schedule_fn = make_schedule(self.schedule, epochs)

    def state(self):
        """``{name: array}`` of the state arrays (what a checkpoint saves)."""
        return {state_name: getattr(self, state_name) for state_name in self.state_names}

    def counters(self):
        """``{name: int}`` of the counters (what a checkpoint saves beside the arrays)."""
        return {counter_name: int(getattr(self, counter_name))
                for counter_name in self.counter_names}

    def load_state(self, arrays, counters):
        """Restore :meth:`state` and :meth:`counters` (from a checkpoint, or an earlier
        training run): into the state arrays :meth:`start` set up, in place, or as copies
        before it (:meth:`start` then carries them on if they match the parameters)."""
        if set(arrays) != set(self.state_names) or set(counters) != set(self.counter_names):
            raise ValueError(f"{type(self).__name__} keeps the arrays {self.state_names} and "
                             f"the counters {self.counter_names}, got {sorted(arrays)} and "
                             f"{sorted(counters)}")
        for state_name, array in arrays.items():
            current = getattr(self, state_name)
            if current is None or current.shape != array.shape or current.dtype != array.dtype:
                setattr(self, state_name, np.array(array))
            else:
                current[...] = array
        for counter_name, value in counters.items():
            setattr(self, counter_name, v.integer(counter_name, value, minimum=0))

    def step_state(self):
        """The state arrays as the fused training step takes them (a tuple, in
        ``state_names`` order)."""
        return tuple(getattr(self, state_name) for state_name in self.state_names)

    def advance(self, n_updates):
        """Count ``n_updates`` updates applied by the fused training step (which updates
        the arrays but not the counters). Nothing to count by default."""

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
    momentum : float in [0, 1)
    nesterov : bool
    weight_decay : float >= 0
        L2 penalty added to the gradient (applies to biases too, as in PyTorch).
    schedule : None, str or callable
        ``None``/"constant", "step", "exponential", "cosine" (default arguments; "cosine"
        needs the number of epochs, set by ``fit``), or a callable ``(lr0, epoch) -> lr``.
    """

    name = "sgd"
    description = "SGD with momentum, Nesterov and weight decay (PyTorch's rule)"
    update_kind = "sgd"
    state_names = ("velocity",)

    def __init__(self, lr=0.02, momentum=0.9, nesterov=False, weight_decay=0.0, schedule=None):
        super().__init__(lr, schedule)
        _, self.momentum, self.nesterov, self.weight_decay = v.sgd_hyperparameters(
            self.lr, momentum, nesterov, weight_decay)

    def step_arguments(self):
        """The hyperparameters :func:`nncore.ops.sgd_momentum_` takes after the rate."""
        return self.momentum, self.nesterov, self.weight_decay

    def step_update(self):
        """The fused training step's update (see :func:`nncore.ops.train_step`), at the
        current learning rate."""
        return {"kind": self.update_kind, "lr": self.current_lr, "momentum": self.momentum,
                "nesterov": self.nesterov, "weight_decay": self.weight_decay}

    def step(self, params, grads, backend=ops):
        """One in-place update of the flat ``params`` from the flat ``grads`` with the
        current learning rate; ``backend`` is :mod:`nncore.ops` or :mod:`nncore.reference`."""
        backend.sgd_momentum_(params, grads, self.velocity, self.current_lr,
                              *self.step_arguments())

    def config(self):
        return {"lr": self.lr, "momentum": self.momentum, "nesterov": self.nesterov,
                "weight_decay": self.weight_decay, "schedule": self._schedule_name()}


class Adam(Optimizer):
    """Adam (PyTorch's rule, amsgrad off; see the module docstring).

    Parameters
    ----------
    lr : float > 0
    betas : pair of floats in [0, 1)
        Decay rates of the first and second moment averages.
    eps : float > 0
        Added to the denominator, after the bias correction (as in PyTorch).
    weight_decay : float >= 0
        L2 penalty added to the gradient (:class:`AdamW` decouples it instead).
    schedule : None, str or callable
        As for :class:`SGD`.

    The state is the two moment arrays ``exp_avg`` and ``exp_avg_sq`` and ``step_count``,
    the number of updates applied so far (the bias corrections use it); all three persist
    across calls to ``fit`` and are saved in checkpoints.
    """

    name = "adam"
    description = "Adam (PyTorch's rule, L2 weight decay added to the gradient)"
    update_kind = "adam"
    state_names = ("exp_avg", "exp_avg_sq")
    counter_names = ("step_count",)
    decoupled = False

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 schedule=None):
        super().__init__(lr, schedule)
        if isinstance(betas, (str, bytes)) or not hasattr(betas, "__len__") or len(betas) != 2:
            raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        _, beta1, beta2, self.eps, self.weight_decay, _ = v.adam_hyperparameters(
            self.lr, betas[0], betas[1], eps, weight_decay, self.decoupled,
            beta_names=("betas[0]", "betas[1]"))
        self.betas = (beta1, beta2)

    def step_arguments(self):
        """The hyperparameters :func:`nncore.ops.adam_` takes after the step number and
        the rate."""
        return (*self.betas, self.eps, self.weight_decay, self.decoupled)

    def step_update(self):
        """The fused training step's update (see :func:`nncore.ops.train_step`): the
        current learning rate and the number of the next update."""
        return {"kind": self.update_kind, "lr": self.current_lr, "beta1": self.betas[0],
                "beta2": self.betas[1], "eps": self.eps, "weight_decay": self.weight_decay,
                "decoupled": self.decoupled, "step": self.step_count + 1}

    def advance(self, n_updates):
        self.step_count += n_updates

    def step(self, params, grads, backend=ops):
        """One in-place update of the flat ``params`` from the flat ``grads`` with the
        current learning rate; counts it. ``backend`` as for :meth:`SGD.step`."""
        backend.adam_(params, grads, self.exp_avg, self.exp_avg_sq, self.step_count + 1,
                      self.current_lr, *self.step_arguments())
        self.step_count += 1

    def config(self):
        return {"lr": self.lr, "betas": list(self.betas), "eps": self.eps,
                "weight_decay": self.weight_decay, "schedule": self._schedule_name()}


class AdamW(Adam):
    """AdamW: Adam with decoupled weight decay (PyTorch's rule): each update first
    multiplies the parameters by ``1 - lr * weight_decay`` and adds nothing to the
    gradient. Parameters as for :class:`Adam`; ``weight_decay`` defaults to 0.01."""

    name = "adamw"
    description = "AdamW: Adam with decoupled weight decay (PyTorch's rule)"
    decoupled = True

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 schedule=None):
        super().__init__(lr, betas, eps, weight_decay, schedule)
