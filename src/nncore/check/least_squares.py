"""The optimizers validated on a least-squares problem with a known answer: mini-batch SGD
with and without momentum (:func:`least_squares_demo`) and Adam
(:func:`adam_least_squares_demo`), each against ``numpy.linalg.lstsq`` on the same
consistent system.
"""

import dataclasses
from typing import ClassVar

import numpy as np

from .._validation import integer, real_number
from ..optim import SGD, Adam

__all__ = ["LeastSquaresResult", "least_squares_demo", "AdamLeastSquaresResult",
           "adam_least_squares_demo"]


@dataclasses.dataclass(eq=False, repr=False)  # ndarray fields: compared by identity
class LeastSquaresResult:
    """The outcome of :func:`least_squares_demo`.

    Attributes
    ----------
    x, x_lstsq : ndarray (n,)
        SGD with momentum's answer and ``numpy.linalg.lstsq``'s.
    relative_error : float
        ``||x - x_lstsq|| / ||x_lstsq||`` at the end of the momentum run.
    runs : dict
        ``{"momentum": ..., "plain": ...}``, each a dict with ``objective`` and ``error``
        (arrays, one value per iteration, iteration 0 is the start), ``iterations_to_tolerance``
        (int or None) and ``final_error``.
    lr, momentum, batch_size, tolerance, condition : float / int
    shape : tuple (m, n)
        The shape of ``A``.
    passed : bool
        Momentum reached ``tolerance`` and did so in fewer iterations than plain SGD.
    reason : str
    """

    kind: ClassVar[str] = "least-squares"

    x: np.ndarray
    x_lstsq: np.ndarray
    relative_error: float
    runs: dict
    lr: float
    momentum: float
    batch_size: int
    tolerance: float
    condition: float
    shape: tuple
    passed: bool
    reason: str

    @property
    def verdict(self):
        return "PASS" if self.passed else "FAIL"

    @property
    def table(self):
        """Rows ``(method, iterations to tolerance, final relative error)``."""
        return [(method, run["iterations_to_tolerance"], run["final_error"])
                for method, run in self.runs.items()]

    def summary(self):
        fast = self.runs["momentum"]["iterations_to_tolerance"]
        slow = self.runs["plain"]["iterations_to_tolerance"]
        return (f"{self.verdict:<12} least squares (float64): SGD + momentum vs lstsq  (error "
                f"{self.relative_error:.1e}; {_count(fast)} vs {_count(slow)} iterations)")

    def __str__(self):
        m, n = self.shape
        lines = [f"least squares (float64): min ||A x - b||^2 / (2m), A {m} x {n} (condition of "
                 f"A^T A {self.condition:.0f}), consistent b = A x*, mini-batches of "
                 f"{self.batch_size}, constant lr {self.lr:.3g}",
                 f"  {'method':<24} {'iterations to error <= ' + format(self.tolerance, '.0e'):>30}"
                 f" {'final relative error':>22}"]
        for method, label in (("momentum", f"SGD, momentum {self.momentum:g}"),
                              ("plain", "SGD, no momentum")):
            run = self.runs[method]
            lines.append(f"  {label:<24} {_count(run['iterations_to_tolerance']):>30} "
                         f"{run['final_error']:>22.2e}")
        lines.append(f"  relative error of x against numpy.linalg.lstsq: "
                     f"{self.relative_error:.2e} (must be < {self.tolerance:g})")
        lines.append(f"  {self.verdict}: {self.reason}")
        return "\n".join(lines)

    def __repr__(self):
        return f"<LeastSquaresResult {self.summary()}>"

    def plot(self, path):
        """Objective and relative error against iteration, momentum and plain SGD; saved to
        ``path``."""
        from . import figures  # matplotlib only when a figure is drawn

        return figures.plot_least_squares(self, path)


def _count(iterations):
    return "not reached" if iterations is None else str(iterations)


def _system(m, n, seed, condition):
    """The consistent system of both demos: ``(A, b, x_lstsq, eigenvalues of A^T A / m)``,
    with ``b = A x*`` and the columns of A scaled so that ``A^T A / m`` has condition
    number about ``condition``."""
    rng = np.random.default_rng(seed)
    column_scale = condition ** (-0.5 * np.linspace(0.0, 1.0, n))
    A = rng.standard_normal((m, n)) * column_scale
    x_true = rng.standard_normal(n)
    b = A @ x_true
    x_lstsq = np.linalg.lstsq(A, b, rcond=None)[0]
    return A, b, x_lstsq, np.linalg.eigvalsh(A.T @ A / m)


def _run(optimizer, A, b, x_lstsq, seed, batch_size, tolerance, max_epochs):
    """Mini-batch steps of ``optimizer`` from x = 0, each epoch over a permutation of the
    rows drawn from ``(seed, epoch)`` (so every run sees the same batches), until the
    relative error is below ``tolerance / 100`` or ``max_epochs`` end. Returns the run's
    record: ``x``, ``objective`` and ``error`` per iteration (iteration 0 is the start),
    ``iterations_to_tolerance`` (or None) and ``final_error``."""
    from .. import ops

    m, n = A.shape
    norm_lstsq = np.linalg.norm(x_lstsq)
    x = np.zeros(n)
    optimizer.start(x, max_epochs)
    objective = [ops.least_squares(A, x, b)[0]]
    error = [np.linalg.norm(x - x_lstsq) / norm_lstsq]
    reached = None
    for epoch in range(max_epochs):
        optimizer.lr_at(epoch)
        order = np.random.default_rng([seed, epoch]).permutation(m)
        for start in range(0, m, batch_size):
            rows = order[start:start + batch_size]
            _, grad = ops.least_squares(A[rows], x, b[rows])
            optimizer.step(x, grad)
            objective.append(ops.least_squares(A, x, b)[0])
            error.append(np.linalg.norm(x - x_lstsq) / norm_lstsq)
            if reached is None and error[-1] <= tolerance:
                reached = len(error) - 1
        if error[-1] <= tolerance / 100 or not np.isfinite(error[-1]):
            break
    return {"x": x, "objective": np.array(objective), "error": np.array(error),
            "iterations_to_tolerance": reached, "final_error": float(error[-1])}


def least_squares_demo(m=500, n=20, seed=0, batch_size=50, lr=None, momentum=0.9,
                       condition=100.0, tolerance=1e-6, max_epochs=500):
    """Minimise ``||A x - b||^2 / (2m)`` with nncore's mini-batch SGD, with and without
    momentum, and compare with ``numpy.linalg.lstsq``.

    The system is consistent, ``b = A x*``: every mini-batch gradient vanishes at the
    solution, so SGD with a constant learning rate converges to it (linearly) instead of
    to a noise ball around it, and the relative error can reach ``tolerance``. The columns
    of ``A`` are scaled so that ``A^T A / m`` has condition number about ``condition``,
    which is where momentum pays off. Loss and gradient come from
    :func:`nncore.ops.least_squares`, steps from :class:`nncore.optim.SGD`.

    Parameters
    ----------
    m, n : int
        Rows and unknowns (``m >= n``).
    seed : int
        Seeds ``A``, ``x*`` and the shuffling (both runs see the same batches).
    batch_size : int
    lr : float, optional
        The learning rate of both runs. Default ``0.5 / L`` with ``L`` the largest eigenvalue of
        ``A^T A / m``.
    momentum : float in (0, 1)
    condition : float >= 1
    tolerance : float > 0
        Relative error of ``x`` that counts as converged.
    max_epochs : int
        Budget of each run; a run stops early once its error is below ``tolerance / 100``.

    Returns
    -------
    LeastSquaresResult
    """
    m = integer("m", m)
    n = integer("n", n)
    if m < n:
        raise ValueError(f"m must be >= n for a unique least-squares solution, got m={m}, n={n}")
    batch_size = integer("batch_size", batch_size)
    momentum = real_number("momentum", momentum, 0.0, 1.0, exclusive_minimum=True,
                           exclusive_maximum=True)
    condition = real_number("condition", condition, minimum=1.0)
    tolerance = real_number("tolerance", tolerance, 0.0, 1.0, exclusive_minimum=True)
    max_epochs = integer("max_epochs", max_epochs)
    A, b, x_lstsq, eigenvalues = _system(m, n, seed, condition)
    if lr is None:
        lr = 0.5 / eigenvalues[-1]
    lr = real_number("lr", lr, minimum=0.0, exclusive_minimum=True)
    runs = {method: _run(SGD(lr=lr, momentum=beta), A, b, x_lstsq, seed, batch_size,
                         tolerance, max_epochs)
            for method, beta in (("momentum", momentum), ("plain", 0.0))}

    fast = runs["momentum"]["iterations_to_tolerance"]
    slow = runs["plain"]["iterations_to_tolerance"]
    relative_error = runs["momentum"]["final_error"]
    converged = relative_error < tolerance
    faster = fast is not None and (slow is None or fast < slow)
    passed = converged and faster
    if passed:
        speedup = "" if slow is None else f" ({slow / fast:.1f}x fewer)"
        reason = (f"momentum matches lstsq to {relative_error:.1e} and reaches {tolerance:g} "
                  f"in {fast} iterations, plain SGD in {_count(slow)}{speedup}")
    elif not converged:
        reason = (f"momentum ends {relative_error:.1e} from lstsq, above {tolerance:g}: "
                  f"raise max_epochs or lower lr")
    else:
        reason = (f"momentum ({_count(fast)} iterations) is not faster than plain SGD "
                  f"({_count(slow)}) at this learning rate")
    return LeastSquaresResult(
        x=runs["momentum"]["x"], x_lstsq=x_lstsq, relative_error=relative_error, runs=runs,
        lr=lr, momentum=momentum, batch_size=batch_size, tolerance=tolerance,
        condition=float(eigenvalues[-1] / eigenvalues[0]), shape=(m, n), passed=passed,
        reason=reason)


@dataclasses.dataclass(eq=False, repr=False)  # ndarray fields: compared by identity
class AdamLeastSquaresResult:
    """The outcome of :func:`adam_least_squares_demo`.

    Attributes
    ----------
    x, x_lstsq : ndarray (n,)
        Adam's answer and ``numpy.linalg.lstsq``'s.
    relative_error : float
        ``||x - x_lstsq|| / ||x_lstsq||`` at the end of the run.
    run : dict
        ``objective`` and ``error`` (arrays, one value per iteration, iteration 0 is the
        start), ``iterations_to_tolerance`` (int or None) and ``final_error``.
    bias_correction_error : float
        The largest relative deviation, over ``bias_steps`` steps on a constant gradient g,
        of each step from ``-lr g / (|g| + eps)`` (see :func:`adam_least_squares_demo`).
    lr, betas, eps, batch_size, tolerance, condition, bias_steps : float / tuple / int
    shape : tuple (m, n)
    passed : bool
        Adam ended within ``tolerance`` of lstsq and its steps on a constant gradient are
        those the bias correction promises.
    reason : str
    """

    kind: ClassVar[str] = "least-squares"

    x: np.ndarray
    x_lstsq: np.ndarray
    relative_error: float
    run: dict
    bias_correction_error: float
    lr: float
    betas: tuple
    eps: float
    batch_size: int
    tolerance: float
    condition: float
    bias_steps: int
    shape: tuple
    passed: bool
    reason: str

    #: The largest deviation of a step on a constant gradient from lr g / (|g| + eps) that
    #: passes: rounding alone gives a few 1e-15 (7e-15 in the default demo).
    BIAS_TOLERANCE: ClassVar[float] = 1e-12

    @property
    def verdict(self):
        return "PASS" if self.passed else "FAIL"

    @property
    def table(self):
        """Rows ``(method, iterations to tolerance, final relative error)``."""
        return [("adam", self.run["iterations_to_tolerance"], self.run["final_error"])]

    def summary(self):
        return (f"{self.verdict:<12} least squares (float64): Adam vs lstsq  (error "
                f"{self.relative_error:.1e}; {_count(self.run['iterations_to_tolerance'])} "
                f"iterations; bias correction to {self.bias_correction_error:.0e})")

    def __str__(self):
        m, n = self.shape
        lines = [f"least squares (float64), Adam: min ||A x - b||^2 / (2m), A {m} x {n} "
                 f"(condition of A^T A {self.condition:.0f}), consistent b = A x*, "
                 f"mini-batches of {self.batch_size}, constant lr {self.lr:g}, betas "
                 f"{self.betas}, eps {self.eps:g}",
                 f"  {'method':<24} {'iterations to error <= ' + format(self.tolerance, '.0e'):>30}"
                 f" {'final relative error':>22}",
                 f"  {'Adam':<24} {_count(self.run['iterations_to_tolerance']):>30} "
                 f"{self.run['final_error']:>22.2e}",
                 f"  relative error of x against numpy.linalg.lstsq: "
                 f"{self.relative_error:.2e} (must be < {self.tolerance:g})",
                 f"  bias correction: {self.bias_steps} steps on the constant gradient at x = 0 "
                 f"each move x by -lr g / (|g| + eps) to {self.bias_correction_error:.1e} "
                 f"(must be < {self.BIAS_TOLERANCE:g})",
                 f"  {self.verdict}: {self.reason}"]
        return "\n".join(lines)

    def __repr__(self):
        return f"<AdamLeastSquaresResult {self.summary()}>"

    def plot(self, path):
        """Objective and relative error against iteration; saved to ``path``."""
        from . import figures  # matplotlib only when a figure is drawn

        return figures.plot_adam_least_squares(self, path)


def adam_least_squares_demo(m=500, n=20, seed=0, batch_size=50, lr=0.05, betas=(0.9, 0.999),
                            eps=1e-8, condition=100.0, tolerance=1e-6, max_epochs=500,
                            bias_steps=10):
    """Minimise ``||A x - b||^2 / (2m)`` with nncore's Adam on the system of
    :func:`least_squares_demo` (same ``m``, ``n``, ``seed``, ``condition``: the same A, b
    and batches), and compare with ``numpy.linalg.lstsq``.

    Two things are checked:

    - **Agreement with lstsq.** The system is consistent, so every mini-batch gradient
      vanishes at the solution and Adam with a constant learning rate converges to it; its
      relative error must end below ``tolerance``. The iterations it took to get there are
      reported.
    - **The bias correction.** On a constant gradient g, Adam's bias-corrected moments are
      ``m_t / (1 - beta1^t) = g`` and ``v_t / (1 - beta2^t) = g^2`` exactly at every step
      t, so every step is ``-lr g / (|g| + eps)``, whatever t. ``bias_steps`` steps with the
      full gradient at x = 0 held fixed must each match it to 1e-12; a missing or wrong
      bias correction (a count that does not advance, a power off by one) is off by 10% or
      more within the first steps.

    Loss and gradient come from :func:`nncore.ops.least_squares`, steps from
    :class:`nncore.optim.Adam` (the ``adam_`` kernel).

    Parameters
    ----------
    m, n, seed, batch_size, condition, tolerance, max_epochs
        As for :func:`least_squares_demo`.
    lr : float > 0
    betas : pair of floats in [0, 1)
    eps : float > 0
    bias_steps : int >= 1

    Returns
    -------
    AdamLeastSquaresResult
    """
    m = integer("m", m)
    n = integer("n", n)
    if m < n:
        raise ValueError(f"m must be >= n for a unique least-squares solution, got m={m}, n={n}")
    batch_size = integer("batch_size", batch_size)
    condition = real_number("condition", condition, minimum=1.0)
    tolerance = real_number("tolerance", tolerance, 0.0, 1.0, exclusive_minimum=True)
    max_epochs = integer("max_epochs", max_epochs)
    bias_steps = integer("bias_steps", bias_steps)
    optimizer = Adam(lr=lr, betas=betas, eps=eps)  # checks lr, betas and eps
    from .. import ops

    A, b, x_lstsq, eigenvalues = _system(m, n, seed, condition)
    run = _run(optimizer, A, b, x_lstsq, seed, batch_size, tolerance, max_epochs)

    # the bias correction: steps on a gradient held constant
    constant = Adam(lr=lr, betas=betas, eps=eps)
    x = np.zeros(n)
    _, grad = ops.least_squares(A, x, b)
    constant.start(x, 1)
    constant.lr_at(0)
    expected_step = -constant.lr * grad / (np.abs(grad) + constant.eps)
    deviation = 0.0
    for _ in range(bias_steps):
        before = x.copy()
        constant.step(x, grad)
        deviation = max(deviation, float(np.max(np.abs((x - before) - expected_step))
                                         / np.max(np.abs(expected_step))))

    relative_error = run["final_error"]
    converged = relative_error < tolerance
    corrected = deviation < AdamLeastSquaresResult.BIAS_TOLERANCE
    reached = run["iterations_to_tolerance"]
    if converged and corrected:
        reason = (f"Adam matches lstsq to {relative_error:.1e}, reaching {tolerance:g} in "
                  f"{reached} iterations; its steps on a constant gradient are "
                  f"lr g / (|g| + eps) to {deviation:.0e}")
    elif not corrected:
        reason = (f"a step on a constant gradient is off lr g / (|g| + eps) by {deviation:.1e} "
                  f"(relative): the bias correction is wrong")
    else:
        reason = (f"Adam ends {relative_error:.1e} from lstsq, above {tolerance:g}: raise "
                  f"max_epochs or change lr")
    return AdamLeastSquaresResult(
        x=run["x"], x_lstsq=x_lstsq, relative_error=relative_error, run=run,
        bias_correction_error=deviation, lr=optimizer.lr, betas=optimizer.betas,
        eps=optimizer.eps, batch_size=batch_size, tolerance=tolerance,
        condition=float(eigenvalues[-1] / eigenvalues[0]), bias_steps=bias_steps,
        shape=(m, n), passed=converged and corrected, reason=reason)
