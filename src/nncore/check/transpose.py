"""The Jacobian-transpose test: a vector-Jacobian product (a backward pass) against the
Jacobian-vector product, ``|u^T (J v) - v^T (J^T u)| / (||u|| ||J v||)`` for random ``u`` and
``v``, within ``TRANSPOSE_TOLERANCE`` units of round-off. Pure NumPy: nothing of nncore but
argument checks.
"""

import dataclasses
from typing import ClassVar

import numpy as np

from .._validation import finite_float_array, integer, real_number

__all__ = ["TRANSPOSE_TOLERANCE", "TransposeResult", "jacobian_transpose_test"]

#: Jacobian-transpose test bound, in units of the unit round-off of the dtype.
TRANSPOSE_TOLERANCE = 1000.0


def _unit_roundoff(dtype):
    return float(np.finfo(dtype).eps) / 2


@dataclasses.dataclass(eq=False, repr=False)  # compared by identity, as before
class TransposeResult:
    """The outcome of :func:`jacobian_transpose_test`.

    Attributes
    ----------
    name : str
    dtype : numpy.dtype
    rows : list of tuple
        Per trial: ``(u^T (J v), v^T (J^T u), relative discrepancy)``.
    discrepancy : float
        The largest relative discrepancy ``|u^T J v - v^T J^T u| / (||u|| ||J v||)``.
    bound : float
        ``TRANSPOSE_TOLERANCE`` times the unit round-off of ``dtype``.
    passed : bool
    verdict : {"PASS", "FAIL"}
    reason : str
    size_in, size_out : int
        The sizes of ``v`` (``x.size``) and of ``J v``.
    """

    kind: ClassVar[str] = "transpose"

    name: str
    dtype: np.dtype
    rows: list
    discrepancy: float
    bound: float
    passed: bool
    verdict: str
    reason: str
    size_in: int
    size_out: int

    @property
    def table(self):
        return list(self.rows)

    def summary(self):
        return (f"{self.verdict:<12} transpose test: {self.name}  "
                f"(discrepancy {self.discrepancy:.1e}, bound {self.bound:.1e})")

    def __str__(self):
        lines = [f"Jacobian-transpose test: {self.name}  ({self.dtype.name}, "
                 f"{self.size_in} inputs, {self.size_out} outputs)",
                 f"  {'trial':>5}  {'u^T (J v)':>24}  {'v^T (J^T u)':>24}  {'relative diff':>13}"]
        for i, (left, right, relative) in enumerate(self.rows):
            lines.append(f"  {i:>5}  {left:24.16e}  {right:24.16e}  {relative:13.2e}")
        lines.append(f"  worst {self.discrepancy:.2e}, bound {self.bound:.2e} "
                     f"({TRANSPOSE_TOLERANCE:g} x unit round-off)")
        lines.append(f"  {self.verdict}: {self.reason}")
        return "\n".join(lines)

    def __repr__(self):
        return f"<TransposeResult {self.summary()}>"



def jacobian_transpose_test(jvp, vjp, x, trials=3, seed=0, tolerance=TRANSPOSE_TOLERANCE,
                            name="J"):
    """Check a vector-Jacobian product against a Jacobian-vector product.

    For random ``v`` (shape of ``x``) and ``u`` (shape of ``J v``) computes
    ``|u^T (J v) - v^T (J^T u)| / (||u|| ||J v||)`` and passes if every trial is at most
    ``tolerance`` units of round-off of ``x``'s dtype. (The denominator is in fact the
    larger of ``||u|| ||J v||`` and ``||v|| ||J^T u||``, so that a backward pass returning
    something huge, or a ``J v`` of 0, is still judged on a relative scale.) Together with a
    passing :func:`jacobian_test` of ``jvp`` this proves the backward pass.

    Parameters
    ----------
    jvp : callable
        ``jvp(v) -> J v``.
    vjp : callable
        ``vjp(u) -> J^T u``, shaped like ``x``.
    x : ndarray, float32 or float64
        Gives the shape and dtype of ``v`` (the point itself is built into jvp and vjp).
    trials : int >= 1
    seed : int
    tolerance : float > 0
        In units of the unit round-off (``2**-53`` for float64, ``2**-24`` for float32).
    name : str

    Returns
    -------
    TransposeResult
    """
    x = finite_float_array("x", x)
    if not callable(jvp) or not callable(vjp):
        raise TypeError("jvp and vjp must be callables")
    trials = integer("trials", trials)
    tolerance = real_number("tolerance", tolerance, minimum=0.0, exclusive_minimum=True)
    dtype = x.dtype
    bound = tolerance * _unit_roundoff(dtype)
    rng = np.random.default_rng(seed)
    rows = []
    size_out = 0
    for _ in range(trials):
        v = rng.standard_normal(x.shape).astype(dtype)
        Jv = np.array(jvp(v), dtype=np.float64)
        u = rng.standard_normal(Jv.shape).astype(dtype)
        JTu = np.array(vjp(u), dtype=np.float64)
        if JTu.shape != x.shape:
            raise ValueError(f"vjp must return the shape of x {x.shape}, got {JTu.shape}")
        size_out = Jv.size
        left = float(np.vdot(u.astype(np.float64), Jv))
        right = float(np.vdot(v.astype(np.float64), JTu))
        scale = max(np.linalg.norm(u) * np.linalg.norm(Jv),
                    np.linalg.norm(v) * np.linalg.norm(JTu))
        relative = abs(left - right) / scale if scale > 0 else 0.0
        rows.append((left, right, relative))
    discrepancy = max(row[2] for row in rows)
    passed = discrepancy <= bound
    if passed:
        reason = (f"u^T (J v) and v^T (J^T u) agree to {discrepancy:.1e} relative, within "
                  f"round-off: the backward pass is the transpose of the JVP")
    else:
        reason = (f"u^T (J v) and v^T (J^T u) differ by {discrepancy:.1e} relative, far above "
                  f"round-off: the backward pass is not the transpose of the JVP")
    return TransposeResult(name=name, dtype=dtype, rows=rows, discrepancy=discrepancy,
                           bound=bound, passed=passed, verdict="PASS" if passed else "FAIL",
                           reason=reason, size_in=x.size, size_out=size_out)
