"""Status codes of a fused training step, shared by every backend.

Plain Python with no imports, so that the training loop, the networks and the NumPy
reference can name a status without reaching the compiled module. The kernels return the
same numbers (``tests/test_backends.py`` holds them to it).
"""

__all__ = ["OK", "UPDATE_NOT_FINITE"]

#: The step ran: loss and gradient were computed and, if the loss was finite, the update
#: applied (a non-finite loss skips the update; the training loop checks the loss).
OK = -1
#: The step skipped its update because it would have made a weight or the optimizer's
#: state (SGD's velocity, Adam's moments) non-finite; the loss itself was finite. The
#: weights are unchanged.
UPDATE_NOT_FINITE = -2
# Any value >= 0 is the first row of the batch whose label is out of range; nothing was
# computed then.
