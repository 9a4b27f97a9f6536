"""The gradient and Jacobian tests: Taylor tests with fitted orders and a verdict.

Along a unit direction ``d`` the zero-order residual ``||F(x + eps d) - F(x)||`` must shrink
like ``eps`` and the first-order residual ``||F(x + eps d) - F(x) - eps J d||`` like
``eps**2``; the method, the fitting window and the verdicts are described in the
:mod:`nncore.check` docstring. Pure NumPy: nothing of nncore but argument checks.
"""

import dataclasses
import math

import numpy as np

from .._validation import finite_float_array, integer, real_number

__all__ = ["ORDER_TOLERANCE", "ROUNDOFF_MARGIN", "MIN_WINDOW", "TaylorResult", "gradient_test",
           "jacobian_test"]

#: A fitted order passes within this distance of its target (1 for the zero-order residual;
#: the first-order residual needs at least 2 - ORDER_TOLERANCE). A wrong derivative gives 1.
ORDER_TOLERANCE = 0.25
#: A residual is used for fitting only if it exceeds this many times the round-off level of
#: the difference F(x + eps d) - F(x), so that round-off moves it by 1% at most.
ROUNDOFF_MARGIN = 100.0
#: The fewest consecutive usable steps a fitted order is based on.
MIN_WINDOW = 3

_NO_ORDER = float("nan")


def _unit_roundoff(dtype):
    return float(np.finfo(dtype).eps) / 2


def _direction(direction, x, rng):
    """A unit-norm standard-normal direction shaped like ``x``, or the given one (float64)."""
    if direction is None:
        d = rng.standard_normal(x.shape)
        return d / np.linalg.norm(d)
    d = np.asarray(direction, dtype=np.float64)
    if d.shape != x.shape:
        raise ValueError(f"direction must have the shape of x {x.shape}, got {d.shape}")
    if not np.isfinite(d).all() or not np.any(d):
        raise ValueError("direction must be finite and not all zero")
    return d


def _evaluate(F, x):
    """``F(x)`` as a new flat float64 array (F may return a buffer it reuses)."""
    return np.array(F(x), dtype=np.float64).reshape(-1)


def _local_orders(eps, residual):
    """Slope of log(residual) against log(eps) between consecutive steps (nan if undefined)."""
    orders = np.full(len(eps), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.log(residual[1:] / residual[:-1]) / np.log(eps[1:] / eps[:-1])
    good = (residual[1:] > 0) & (residual[:-1] > 0)
    orders[1:][good] = ratio[good]
    return orders


def _last_run(usable, length):
    """Indices of the last run of consecutive ``usable`` steps (at most ``length`` of them)."""
    where = np.flatnonzero(usable)
    if where.size == 0:
        return where
    end = where[-1]
    start = end
    while start > 0 and usable[start - 1] and end - start + 1 < length:
        start -= 1
    return np.arange(start, end + 1)


def _settled_window(eps, residual, usable, length):
    """The fitting window: the last run of consecutive ``usable`` steps (at most ``length``),
    trimmed from the large-eps end until its local orders agree to within ORDER_TOLERANCE.

    Large steps may not yet follow the asymptotic order (higher Taylor terms), small ones
    are cut by round-off; in between the residual settles into one order. Trimming only
    drops the *largest* steps, so it moves the fit towards the asymptotic end and can never
    hide an order-1 residual there. Returns ``(window, unsettled)``: the window is empty if
    fewer than MIN_WINDOW steps remain; ``unsettled`` says whether trimming emptied it.
    """
    run = _last_run(usable, length)
    if len(run) < MIN_WINDOW:
        return run[:0], False
    orders = _local_orders(eps[run], residual[run])[1:]
    while len(run) >= MIN_WINDOW and np.ptp(orders) > ORDER_TOLERANCE:
        run, orders = run[1:], orders[1:]
    if len(run) < MIN_WINDOW:
        return run[:0], True
    return run, False


def _fitted_order(eps, residual, window):
    if len(window) < MIN_WINDOW:
        return _NO_ORDER
    slope, _ = np.polyfit(np.log(eps[window]), np.log(residual[window]), 1)
    return float(slope)



@dataclasses.dataclass(eq=False, repr=False)  # ndarray fields: compared by identity
class TaylorResult:
    """The outcome of :func:`gradient_test` or :func:`jacobian_test`.

    Attributes
    ----------
    name : str
    kind : {"gradient", "jacobian"}
    dtype : numpy.dtype
        The dtype ``F`` was evaluated in.
    size : int
        The number of unknowns (``x.size``).
    eps : ndarray (steps,)
    zero, first : ndarray (steps,)
        The zero-order residual ``||F(x + eps d) - F(x)||`` and the first-order residual
        ``||F(x + eps d) - F(x) - eps J d||`` (absolute values for a scalar ``F``).
    noise : ndarray (steps,)
        Round-off level of the difference ``F(x + eps d) - F(x)`` at each step (measured,
        see :func:`gradient_test`).
    crossed : ndarray of bool (steps,)
        Steps at which the ``kinks`` pattern differed from that at ``x`` (not used).
    window_zero, window_first : ndarray of int
        Indices of the steps each order was fitted over (empty if none).
    orders : tuple (zero_order, first_order)
        The fitted orders (nan where there was no window).
    passed : bool
    verdict : {"PASS", "FAIL", "INCONCLUSIVE"}
    reason : str
        One sentence on why.
    resolution : float
        The relative error in the directional derivative ``J d`` below which the test could
        not have told it from round-off or curvature (nan if there is no verdict).
    direction : ndarray
        The unit direction ``d`` (float64, shape of ``x``).
    exact : bool
        Passed as exactly linear along ``d`` (the first-order residual at round-off).
    """

    name: str
    kind: str
    dtype: np.dtype
    size: int
    eps: np.ndarray
    zero: np.ndarray
    first: np.ndarray
    noise: np.ndarray
    crossed: np.ndarray
    window_zero: np.ndarray
    window_first: np.ndarray
    orders: tuple
    passed: bool
    verdict: str
    reason: str
    resolution: float
    direction: np.ndarray

    @property
    def table(self):
        """Rows ``(eps, zero-order residual, first-order residual)``."""
        return [(float(e), float(r0), float(r1))
                for e, r0, r1 in zip(self.eps, self.zero, self.first)]

    @property
    def local_orders(self):
        """``(zero, first)``: the slope between each step and the one before (nan first)."""
        return _local_orders(self.eps, self.zero), _local_orders(self.eps, self.first)

    def _labels(self):
        if self.kind == "gradient":
            return "|f(x+eps d)-f(x)|", "|f(x+eps d)-f(x)-eps d'g|"
        return "||F(x+eps d)-F(x)||", "||F(x+eps d)-F(x)-eps J d||"

    @property
    def exact(self):
        """True when the first-order residual is at round-off at every usable step."""
        return self.passed and len(self.window_first) == 0

    def _orders_text(self):
        zero, first = self.orders
        first_text = "round-off (linear)" if self.exact else _format_order(first)
        return f"orders {_format_order(zero)}, {first_text}"

    def summary(self):
        """One line: verdict, name, fitted orders and how finely J d was checked."""
        derivative = "d'g" if self.kind == "gradient" else "J d"
        checked = ""
        if np.isfinite(self.resolution):
            how = "off by about" if self.verdict == "FAIL" else "checked to"
            checked = f"; {derivative} {how} {self.resolution:.0e}"
        return f"{self.verdict:<12} {self.kind} test: {self.name}  ({self._orders_text()}{checked})"

    def __str__(self):
        zero_label, first_label = self._labels()
        order_zero, order_first = self.local_orders
        in_zero, in_first = set(self.window_zero.tolist()), set(self.window_first.tolist())
        at_roundoff = self.first <= ROUNDOFF_MARGIN * self.noise
        zero_at_roundoff = self.zero <= ROUNDOFF_MARGIN * self.noise
        lines = [f"{self.kind} test: {self.name}  ({self.dtype.name}, {self.size} unknowns, "
                 f"unit direction)",
                 f"  {'eps':>9}  {zero_label:>24} {'order':>6}  {first_label:>28} {'order':>6}"]
        for i, e in enumerate(self.eps):
            flag0 = "*" if i in in_zero else ("~" if zero_at_roundoff[i] else " ")
            flag1 = "*" if i in in_first else ("~" if at_roundoff[i] else " ")
            row = (f"  {e:9.3e}  {self.zero[i]:23.3e}{flag0} {_format_order(order_zero[i]):>6}"
                   f"  {self.first[i]:27.3e}{flag1} {_format_order(order_first[i]):>6}")
            if self.crossed[i]:
                row += "  crossed a kink (not used)"
            lines.append(row)
        lines.append(f"  * used in the fit   ~ within {ROUNDOFF_MARGIN:g}x of the round-off level "
                     f"(measured: {np.median(self.noise):.1e})")
        zero, first = self.orders
        zero_window = _window_text(self.eps, self.window_zero)
        first_window = _window_text(self.eps, self.window_first)
        lines.append(f"  fitted orders: zero-order {_format_order(zero)}{zero_window}, "
                     f"first-order {_format_order(first)}{first_window}; "
                     f"pass needs 1 +- {ORDER_TOLERANCE} and >= {2 - ORDER_TOLERANCE}")
        lines.append(f"  {self.verdict}: {self.reason}")
        return "\n".join(lines)

    def __repr__(self):
        return f"<TaylorResult {self.summary()}>"

    def plot(self, path=None, ax=None, title=None):
        """Draw both residuals against eps on log-log axes, with reference slopes 1 and 2,
        the round-off zone and the fitted windows.

        Parameters
        ----------
        path : str, optional
            Save a new figure here (and return the path).
        ax : matplotlib Axes, optional
            Draw into this axes instead (``path`` is then ignored; returns ``ax``).
        title : str, optional
            Defaults to the check's name and verdict.
        """
        from . import figures  # matplotlib only when a figure is drawn

        title = title or f"{self.name}\n{self.verdict}: {self._orders_text()}"
        return figures.plot_taylor(self, path, ax, title, ROUNDOFF_MARGIN)


def _format_order(value):
    return "-" if not np.isfinite(value) else f"{value:.2f}"


def _window_text(eps, window):
    if len(window) == 0:
        return " (no window)"
    return f" over eps {eps[window].min():.1e}..{eps[window].max():.1e}"



# --- the Taylor tests ----------------------------------------------------------------------

def _taylor_test(kind, F, x, linear_term, direction, eps0, factor, steps, seed, window, kinks,
                 name):
    x = finite_float_array("x", x)
    eps0 = real_number("eps0", eps0, minimum=0.0, exclusive_minimum=True)
    factor = real_number("factor", factor, 0.0, 1.0, exclusive_minimum=True,
                         exclusive_maximum=True)
    steps = integer("steps", steps, minimum=MIN_WINDOW + 1)
    window = integer("window", window, minimum=MIN_WINDOW)
    if kinks is not None and not callable(kinks):
        raise TypeError(f"kinks must be None or a callable x -> pattern, got {kinks!r}")
    dtype = x.dtype
    unit = _unit_roundoff(dtype)
    rng = np.random.default_rng(seed)
    d = _direction(direction, x, rng)
    x64 = x.astype(np.float64)

    F0 = _evaluate(F, x)
    if not np.isfinite(F0).all():
        raise ValueError(f"F(x) is not finite for {name!r}")
    pattern0 = None if kinks is None else np.asarray(kinks(x)).copy()

    def moved(t):
        """The point x + t d rounded to dtype, and the step actually taken (exact)."""
        point = (x64 + t * d).astype(dtype)
        return point, point.astype(np.float64) - x64

    def crosses(point):
        return pattern0 is not None and not np.array_equal(np.asarray(kinks(point)), pattern0)

    eps = eps0 * factor ** np.arange(steps)
    zero = np.empty(steps)
    first = np.empty(steps)
    size_F = np.empty(steps)
    crossed = np.zeros(steps, dtype=bool)
    for i, e in enumerate(eps):
        point, delta = moved(e)
        Fi = _evaluate(F, point)
        linear = np.asarray(linear_term(delta), dtype=np.float64).reshape(-1)
        if linear.shape != F0.shape:
            raise ValueError(f"the linear term has {linear.size} values but F has {F0.size}")
        crossed[i] = crosses(point) or not np.isfinite(Fi).all()
        difference = Fi - F0
        zero[i] = np.linalg.norm(difference)
        first[i] = np.linalg.norm(difference - linear)
        size_F[i] = np.linalg.norm(Fi)

    noise_level, noise_note = _roundoff_level(F, F0, moved, crosses, eps0, unit)
    noise = np.maximum(noise_level, unit * (np.linalg.norm(F0) + size_F))

    fields = dict(name=name, kind=kind, dtype=dtype, size=x.size, eps=eps, zero=zero,
                  first=first, noise=noise, crossed=crossed, direction=d)
    derivative = "d'g" if kind == "gradient" else "J d"
    verdict, reason, windows, orders, resolution = _verdict(
        eps, zero, first, noise, crossed, window, unit, noise_note, derivative)
    return TaylorResult(window_zero=windows[0], window_first=windows[1], orders=orders,
                        passed=verdict == "PASS", verdict=verdict, reason=reason,
                        resolution=resolution, **fields)


def _roundoff_level(F, F0, moved, crosses, eps0, unit):
    """Measure the round-off in ``F(x + t d) - F(x)``.

    ``F`` is evaluated at 9 points ``t`` evenly spaced in ``[-tau, tau]``, with
    ``tau = eps0 * unit**(1/3)``, so small that a cubic in ``t`` describes the exact values to
    far below round-off; what the least-squares cubic leaves is round-off. Returns the
    estimated norm of the round-off of one difference, and a note (or None).
    """
    tau = eps0 * unit ** (1 / 3)
    offsets = tau * np.linspace(-1.0, 1.0, 9)
    values = np.empty((offsets.size, F0.size))
    for j, t in enumerate(offsets):
        if t == 0:
            values[j] = F0
            continue
        point, _ = moved(t)
        if crosses(point):
            return 0.0, "a kink lies within the round-off probe; round-off level not measured"
        values[j] = _evaluate(F, point)
    basis = np.vander(offsets / tau, 4)
    coefficients, *_ = np.linalg.lstsq(basis, values - F0, rcond=None)
    leftover = values - F0 - basis @ coefficients
    # per output: variance estimate with 9 - 4 degrees of freedom; a difference has two
    # independent round-offs
    variance = np.sum(leftover ** 2, axis=0) / (offsets.size - 4)
    return math.sqrt(2 * float(np.sum(variance))), None


def _verdict(eps, zero, first, noise, crossed, window, unit, noise_note, derivative):
    """Choose the windows, fit the orders and decide. Returns
    ``(verdict, reason, (window_zero, window_first), (order_zero, order_first), resolution)``;
    ``derivative`` names the checked quantity in the reason ("d'g" or "J d")."""
    threshold = ROUNDOFF_MARGIN * noise
    usable = ~crossed
    window_zero, zero_unsettled = _settled_window(eps, zero, usable & (zero > threshold),
                                                  window)
    window_first, first_unsettled = _settled_window(eps, first, usable & (first > threshold),
                                                    window)
    order_zero = _fitted_order(eps, zero, window_zero)
    order_first = _fitted_order(eps, first, window_first)
    windows = (window_zero, window_first)
    orders = (order_zero, order_first)
    unsettled = (" does not settle into one order between the large steps (higher Taylor "
                 "terms) and round-off")
    too_short = (f": the usable window is too short in {_dtype_name(unit)} ("
                 + ("try float64, " if _dtype_name(unit) == "float32" else "")
                 + "more steps or another eps0)")
    note = f" ({noise_note})" if noise_note else ""
    nan = float("nan")

    if not usable.any():
        return ("INCONCLUSIVE", "every step crossed a kink (a ReLU unit changed sign): "
                "move x away from the kink or lower eps0", windows, orders, nan)
    if not np.isfinite(order_zero):
        if zero_unsettled:
            return ("INCONCLUSIVE", "the zero-order residual" + unsettled + too_short + note,
                    windows, orders, nan)
        return ("INCONCLUSIVE", f"the zero-order residual stands clear of round-off at fewer "
                f"than {MIN_WINDOW} consecutive usable steps: F barely changes along d" + note,
                windows, orders, nan)
    if abs(order_zero - 1) > ORDER_TOLERANCE:
        reason = (f"the zero-order residual shrinks with order {order_zero:.2f}, not 1: d is "
                  "a stationary direction of F (or F is not differentiable at x), so the test "
                  f"cannot judge {derivative}")
        if order_first >= 2 - ORDER_TOLERANCE:
            # nothing points at a wrong derivative, and nothing shows a right one: typical of
            # float32, whose short window can sit where eps d'g and the curvature term cross
            return ("INCONCLUSIVE", reason + f" in this {_dtype_name(unit)} window (the "
                    f"first-order residual has order {order_first:.2f})", windows, orders, nan)
        return ("FAIL", reason, windows, orders, nan)
    if not (usable & (first > threshold)).any():
        # round-off at every usable step: F is linear along d, and the derivative is right
        # to within round-off relative to the largest usable change of F
        largest = np.flatnonzero(usable)[0]
        resolution = threshold[largest] / zero[largest]
        if resolution > 1e-3:
            return ("INCONCLUSIVE", "the first-order residual is at round-off at every usable "
                    f"step, but so is most of the zero-order one: errors in {derivative} "
                    f"below {resolution:.0e} (relative) could hide under "
                    f"{_dtype_name(unit)} round-off", windows, orders, resolution)
        return ("PASS", "exactly linear along d: the first-order residual is at round-off at "
                "every usable step (the Taylor remainder vanishes), so an error in "
                f"{derivative} above {resolution:.0e} (relative) would have shown", windows,
                orders, resolution)
    if not np.isfinite(order_first):
        what = unsettled if first_unsettled else \
            f" stands clear of round-off at fewer than {MIN_WINDOW} consecutive usable steps"
        return ("INCONCLUSIVE", "the first-order residual" + what + too_short + note, windows,
                orders, nan)
    smallest = window_first[-1]
    resolution = first[smallest] / zero[smallest]
    if order_first < 2 - ORDER_TOLERANCE:
        return ("FAIL", f"the first-order residual shrinks with order {order_first:.2f}, not 2: "
                f"the derivative is wrong ({derivative} is off by about {resolution:.1e} "
                "relative)", windows, orders, resolution)
    reason = (f"orders {order_zero:.2f} and {order_first:.2f}; {derivative} matches the change "
              f"of F to {resolution:.0e} (relative) at the smallest fitted step")
    if order_first > 2 + ORDER_TOLERANCE:
        reason += " (order above 2: F has no curvature along d)"
    if crossed.any():
        reason += f"; {int(crossed.sum())} large steps crossed a kink and were not used"
    return "PASS", reason + note, windows, orders, resolution


def _dtype_name(unit):
    return "float32" if unit > 1e-10 else "float64"


def gradient_test(f, x, grad, direction=None, eps0=1.0, factor=0.5, steps=20, seed=0,
                  window=5, kinks=None, name="f"):
    """Taylor test of the gradient of a scalar function.

    For ``eps = eps0 * factor**i`` (``i < steps``) records the zero-order residual
    ``|f(x + eps d) - f(x)|`` (order 1) and the first-order residual
    ``|f(x + eps d) - f(x) - eps d^T grad|`` (order 2 if and only if ``grad`` is the
    gradient), fits both orders over the window before round-off takes over, and gives a
    verdict (see the :mod:`nncore.check` docstring).

    Parameters
    ----------
    f : callable
        ``f(x) -> float``; called with arrays of ``x``'s shape and dtype.
    x : ndarray, float32 or float64
        The point. Its dtype is the precision of the test (steps are rounded to it, and the
        step actually taken is used in the linear term).
    grad : ndarray or callable
        The gradient at ``x`` (shape of ``x``), or ``grad(x) -> ndarray``.
    direction : ndarray, optional
        Shape of ``x``. Default: standard normal, scaled to unit norm (seeded by ``seed``).
    eps0 : float > 0
        The largest step.
    factor : float in (0, 1)
        Each step is ``factor`` times the one before: order 1 and 2 mean ratios
        ``1/factor`` and ``1/factor**2``.
    steps : int >= 4
    seed : int
    window : int >= 3
        At most this many steps (the smallest usable ones) are used for fitting.
    kinks : callable, optional
        ``kinks(x) -> array``: a pattern that changes when ``f`` crosses a kink (e.g. the
        signs of every ReLU pre-activation). Steps whose pattern differs from that at ``x``
        are reported and not used.
    name : str

    Returns
    -------
    TaylorResult
        ``.table``, ``.orders``, ``.passed``, ``str(result)``, ``.plot(path)``.

    Notes
    -----
    The round-off level is measured, not assumed: ``f`` is evaluated at 9 tiny offsets
    ``|t| <= eps0 * u**(1/3)`` (``u`` the unit round-off) and what a fitted cubic leaves is
    round-off. A residual is used only if it is more than ``ROUNDOFF_MARGIN`` times that.
    """
    x_checked = finite_float_array("x", x)
    if callable(grad):
        grad = grad(x_checked)
    g = finite_float_array("grad", grad).astype(np.float64)
    if g.shape != x_checked.shape:
        raise ValueError(f"grad must have the shape of x {x_checked.shape}, got {g.shape}")

    def linear_term(delta):
        return float(np.vdot(g, delta))

    return _taylor_test("gradient", f, x_checked, linear_term, direction, eps0, factor, steps,
                        seed, window, kinks, name)


def jacobian_test(F, x, jvp, direction=None, eps0=1.0, factor=0.5, steps=20, seed=0,
                  window=5, kinks=None, name="F"):
    """Taylor test of a Jacobian-vector product.

    Records ``||F(x + eps d) - F(x)||`` (order 1) and ``||F(x + eps d) - F(x) - eps J d||``
    (order 2 if and only if ``jvp`` is right), with the same steps, windows and verdicts as
    :func:`gradient_test`.

    Parameters
    ----------
    F : callable
        ``F(x) -> ndarray`` of any fixed shape (copied after each call, so a reused buffer
        is fine).
    x : ndarray, float32 or float64
    jvp : callable
        ``jvp(v) -> J v``, the derivative of ``F`` at ``x`` applied to ``v`` (shape and dtype
        of ``x``), shaped like ``F(x)``.
    direction, eps0, factor, steps, seed, window, kinks, name
        As in :func:`gradient_test`.

    Returns
    -------
    TaylorResult
    """
    x_checked = finite_float_array("x", x)
    if not callable(jvp):
        raise TypeError(f"jvp must be a callable v -> J v, got {jvp!r}")

    def linear_term(delta):
        return jvp(delta.astype(x_checked.dtype))

    return _taylor_test("jacobian", F, x_checked, linear_term, direction, eps0, factor, steps,
                        seed, window, kinks, name)

