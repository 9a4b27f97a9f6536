"""The fit loop: shuffled mini-batches, history, callbacks, progress, and faults handled.

- Each epoch shuffles the training set once into a reusable buffer, so every mini-batch is a
  contiguous view and a training step allocates nothing. The last partial batch is used.
- The same ``seed`` (and the same network seed) gives bit-identical weights and history on
  the same thread count (a large step on two threads rounds some products differently:
  nncore.ops.TWO_THREAD_STEP_FLOPS).
- A non-finite loss, or an update that would make a weight non-finite, stops training with
  :class:`TrainingDiverged`, naming the epoch, the step and the first layer whose output
  went non-finite. Before it is raised the network (and the optimizer's state) go back to
  the end of the last epoch that finished with a finite loss, or of the epoch before if
  those weights already overflow on the training set, or else to the start of training, so
  ``predict`` works on the network afterwards; the message names the epoch restored.
- Ctrl-C (KeyboardInterrupt) keeps the weights and the history so far on the network
  (``network.history``, with ``history.interrupted`` True), runs the callbacks'
  ``on_train_end`` (EarlyStopping restores its best weights) and then raises the
  KeyboardInterrupt again, so a script stops, as with Keras or PyTorch. Catch it to go on.
- Epochs are numbered from 1 everywhere: History's ``epoch`` column, the ``epoch`` passed to
  :meth:`Callback.on_epoch_end`, :attr:`EarlyStopping.best_epoch` and the error messages.
"""

import csv
import hashlib
import math
import os
import sys
import time
import warnings
from collections.abc import Iterable, Mapping

import numpy as np

from . import _validation as v
from . import modelfile
from .optim import SGD, Optimizer, schedule_uses_epochs
from .status import UPDATE_NOT_FINITE

__all__ = ["fit", "History", "Callback", "EarlyStopping", "TrainingDiverged"]

#: Mini-batch steps per call into the compiled step (Ctrl-C is seen between calls).
STEPS_PER_CALL = 32


class TrainingDiverged(FloatingPointError):
    """Training produced a non-finite loss, or an update that would make weights non-finite.

    Attributes: ``epoch`` and ``step`` (0-based), ``loss``, ``layer`` (index of the first
    layer whose output was non-finite, or None), ``update_overflow`` (True when the loss was
    finite but the update would have overflowed), ``restored_epoch`` (the 1-based epoch
    whose end-of-epoch weights the network was given back, 0 for the weights it started
    training with; None if nothing was restored). :func:`fit` restores those weights, and
    the optimizer's state of that moment, before raising: those after the last epoch with a
    finite loss, unless they overflow on the training set (they can be ~1e22 by then), then
    those after the epoch before, else the weights training started with.
    """

    def __init__(self, epoch, step, loss, layer, update_overflow=False, restored_epoch=None):
        self.epoch, self.step, self.loss, self.layer = epoch, step, loss, layer
        self.update_overflow = update_overflow
        self.restored_epoch = restored_epoch
        if update_overflow:
            what = f"the loss was {loss} but the update would make weights non-finite"
        else:
            where = f"layer {layer} output" if layer is not None else "the loss"
            what = f"loss is {loss}; first non-finite value in {where}"
        if restored_epoch is None:
            kept = "the network keeps its last (finite) weights"
        elif restored_epoch == 0:
            kept = ("no epoch finished, so the network was restored to the weights it started "
                    "training with")
        else:
            kept = f"the network was restored to its weights after epoch {restored_epoch}"
        super().__init__(
            f"training diverged at epoch {epoch + 1}, step {step + 1}: {what}; {kept}. "
            "Try a smaller learning rate."
        )


class History(Mapping):
    """Per-epoch record of a training run: a read-only mapping from column to list.

    ``history[key]`` is a list over epochs for key in :attr:`columns`: the epoch (1-based), the loss,
    the loss's scores (``accuracy`` for classification; ``rmse`` and ``r2`` for
    regression), the same on the validation set (``val_...``), the learning rate and the
    seconds. Validation columns hold NaN when there was no validation data.
    ``interrupted`` is True after Ctrl-C and ``stopped_early`` names the epoch an
    :class:`EarlyStopping` ended on. ``train_seconds`` lists, for each epoch the last
    ``fit`` call ran (not those a checkpoint brought back), its seconds without the scoring
    of the validation data (which ``seconds`` includes, the first time with one-time
    costs): the time of the training steps.

    It is a :class:`collections.abc.Mapping` over its columns: iterating, ``keys()``,
    ``items()``, ``values()``, ``in`` and ``dict(history)`` see the columns in order, so
    ``pandas.DataFrame(dict(history))`` (or ``pandas.DataFrame(history.history)``) is the
    table. One exception to the Mapping rule: ``len(history)`` is the number of epochs,
    not of columns (``len(history.columns)``).
    """

    #: The columns of a classifier's history.
    COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds")

    def __init__(self, score_names=("accuracy",)):
        scores = tuple(score_names)
        self.columns = ("epoch", "loss", *scores, "val_loss",
                        *(f"val_{name}" for name in scores), "lr", "seconds")
        self.history = {column: [] for column in self.columns}
        self.interrupted = False
        self.stopped_early = None
        self.train_seconds = []

    def append(self, **row):
        for column in self.columns:
            self.history[column].append(row[column])

    def __getitem__(self, key):
        return self.history[key]

    def __iter__(self):
        return iter(self.columns)

    def __len__(self):
        """The number of epochs recorded (not the number of columns)."""
        return len(self.history["epoch"])

    def __contains__(self, key):
        return key in self.history

    # the views are the columns' own (Mapping's would take their size from __len__)
    def keys(self):
        return self.history.keys()

    def values(self):
        return self.history.values()

    def items(self):
        return self.history.items()

    def __eq__(self, other):
        if not isinstance(other, Mapping):
            return NotImplemented
        return dict(self.items()) == dict(other.items())

    __hash__ = None

    def last(self):
        """The last epoch's row as a dict (empty if no epoch finished)."""
        return {column: values[-1] for column, values in self.history.items() if values}

    def to_csv(self, path):
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(self.columns)
            for i in range(len(self)):
                writer.writerow([self.history[c][i] for c in self.columns])

    def __repr__(self):
        return f"History({len(self)} epochs, last={self.last()})"


class Callback:
    """Hooks called by :func:`fit`. ``on_epoch_end`` returns True to stop training.

    ``on_epoch_end(network, epoch, logs)`` gets the 1-based number of the epoch that just
    ended, the same number as ``logs["epoch"]`` and History's ``epoch`` column.
    ``on_train_end`` runs when training ends normally, by early stopping, or by Ctrl-C
    (before the KeyboardInterrupt is raised again); not after :class:`TrainingDiverged`.
    """

    def on_train_begin(self, network, history):
        pass

    def on_epoch_end(self, network, epoch, logs):
        return False

    def on_train_end(self, network, history):
        pass

    def stop_note(self):
        """Why this callback stopped training, in a few words (fit prints it with
        ``verbose``); None says only that it did."""
        return None


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    Keras's rule: training stops at the end of the ``patience``-th epoch in a row without
    an improvement (``patience=2``: the best epoch, then two worse ones, then stop;
    ``patience=0``: stop at the first epoch that does not improve). ``best_epoch`` is the
    1-based number of the best epoch (History's ``epoch``), None before the first.
    ``monitor`` is a History column of the run: "val_loss" or "loss", or a score with or
    without "val_" ("accuracy" for classification, "rmse" or "r2" for regression); losses
    and RMSE are minimised, accuracy and R^2 maximised. With ``restore_best`` the network
    gets the weights of its best epoch back when training ends (also after Ctrl-C).
    """

    #: Monitored values that improve upward; every other one improves downward.
    MAXIMISED = ("accuracy", "r2")
    MONITORS = ("val_loss", "loss", "val_accuracy", "accuracy", "val_rmse", "rmse", "val_r2",
                "r2")

    def __init__(self, monitor="val_loss", patience=5, min_delta=0.0, restore_best=True):
        self.monitor = v.choice("monitor", monitor, self.MONITORS)
        self.patience = v.integer("patience", patience, minimum=0)
        self.min_delta = v.real_number("min_delta", min_delta, minimum=0.0)
        self.restore_best = v.boolean("restore_best", restore_best)
        maximised = monitor.removeprefix("val_") in self.MAXIMISED
        self.sign = -1.0 if maximised else 1.0  # minimise sign * value

    def on_train_begin(self, network, history):
        if self.monitor not in history.columns:
            raise ValueError(f"EarlyStopping monitors {self.monitor!r}, which this run does not "
                             f"record (its columns: {', '.join(history.columns[1:-2])})")
        self.best, self.best_epoch, self.wait, self.best_params = math.inf, None, 0, None

    def on_epoch_end(self, network, epoch, logs):
        value = logs[self.monitor]
        if math.isnan(value):
            raise ValueError(f"EarlyStopping monitors {self.monitor!r}, which is not recorded "
                             "(pass validation_data to fit)")
        if self.judge(epoch, value):
            if self.restore_best:
                self.best_params = network.params.copy()
            return False
        return self.wait >= self.patience

    def judge(self, epoch, value):
        """Count ``epoch`` (1-based) with its monitored ``value`` as :meth:`on_epoch_end`
        does (``best``, ``best_epoch``, ``wait``), without the weights; True if it is the
        best so far. Also how a resumed run's earlier epochs can be counted again."""
        score = self.sign * value
        if score < self.best - self.min_delta:
            self.best, self.best_epoch, self.wait = score, epoch, 0
            return True
        self.wait += 1
        return False

    def on_train_end(self, network, history):
        if self.restore_best and self.best_params is not None:
            network.params[...] = self.best_params

    def stop_note(self):
        kept = (f"; the weights of epoch {self.best_epoch} are restored"
                if self.restore_best and self.best_params is not None else "")
        return (f"{self.monitor} did not improve for {self.wait} epoch(s) after its best, "
                f"epoch {self.best_epoch}{kept}")


def _first_nonfinite_layer(step):
    for i, output in enumerate(step.outputs):
        if not np.isfinite(output).all():
            return i
    return None


def fit(network, X, y, epochs=30, batch_size=64, optimizer=None, validation_data=None,
        seed=0, verbose=1, callbacks=(), shuffle=True, checkpoint=None, checkpoint_every=1,
        sample_weight=None, report_interrupt=True):
    """Train ``network`` on ``(X, y)`` by mini-batches with ``optimizer``.

    Parameters
    ----------
    network : Network
    X : array (n, n_in)
        Cast to the network's dtype; NaN/inf raise ValueError.
    y : integer labels (n,) for a classifier; real values (n,) or (n, n_outputs) for a
        regression network (its loss says which). Out-of-range labels or non-finite
        values raise ValueError.
    epochs : int >= 0
    batch_size : int >= 1
        Larger than ``n``: one batch of all the samples per epoch, with a UserWarning.
    optimizer : Optimizer, optional
        Defaults to ``SGD()``; or ``Adam()``, ``AdamW()`` (:data:`nncore.optim.OPTIMIZERS`).
        Its state (SGD's velocity; Adam's moments and update count) persists across calls
        to ``fit``.
    validation_data : (X_val, y_val), optional
        Scored after every epoch.
    seed : int
        Seeds the shuffling.
    verbose : {0, 1, 2}
        0 silent, 1 a tqdm progress bar, 2 one line per epoch.
    callbacks : list of Callback, or one Callback
        ``on_epoch_end`` gets the 1-based epoch number (History's ``epoch``). With
        ``verbose``, a callback that stops training says why in one line
        (``Callback.stop_note``).
    shuffle : bool
    checkpoint : path of a folder, optional
        Every ``checkpoint_every`` epochs (and after the last) the weights, the optimizer's
        whole state, the shuffling state and the history are written atomically to
        ``checkpoint/checkpoint.npz``. If that file exists when ``fit`` starts, training
        resumes from it and ends exactly as an uninterrupted run would (the network, data,
        batch size, seed and optimizer settings must be the same; callbacks start afresh).
        A different ``epochs`` continues the run, with a warning if the learning-rate
        schedule depends on it ("cosine": the rest of the run then matches neither
        uninterrupted run).
    checkpoint_every : int >= 1
    sample_weight : array (n,), optional
        One weight per sample, finite and >= 0, not all 0 (scikit-learn's meaning): each
        mini-batch's loss is then the weighted mean ``sum_i w_i l_i / sum_i w_i`` of its
        samples' losses (for the squared error a sample's loss is the mean over its
        outputs). The weights are shuffled with the samples. A mini-batch whose weights are
        all 0 has loss 0 and gradient 0; the optimizer still takes its step with that zero
        gradient (SGD's momentum and weight decay, Adam's moments still move the weights).
        All-ones weights train exactly as no weights. History's ``loss`` is then the
        weighted mean over the epoch (and ``r2`` is taken against the weighted variance of
        ``y``); ``accuracy`` and every validation score stay unweighted. A checkpoint
        records a hash of the weights, and resuming needs the same weights.
    report_interrupt : bool
        With ``verbose``, Ctrl-C prints a line saying that the weights and the history so
        far are kept on the network, and a callback that stops training early prints why.
        False for a caller that says how training ended in its own words (``nncore train``
        saves the weights and says where and which; the scikit-learn estimators warn
        "Training interrupted by user.").

    Returns
    -------
    History
        Also stored as ``network.history``.

    Raises
    ------
    KeyboardInterrupt
        On Ctrl-C, after keeping the weights and the history so far (``network.history``,
        ``interrupted`` True) and running the callbacks' ``on_train_end``.
    TrainingDiverged
        After restoring the weights (and optimizer state) of the last epoch that finished
        with a finite loss (or the one before, if those overflow on ``X``), or of the start
        of training; ``restored_epoch`` says which. ``network.history`` holds every
        finished epoch.
    """
    (X, y, weights, epochs, batch_size, validation, optimizer, callbacks, checkpoint_every,
     report_interrupt) = _checked_arguments(
        network, X, y, sample_weight, epochs, batch_size, verbose, validation_data, optimizer,
        callbacks, checkpoint_every, report_interrupt)
    n = X.shape[0]

    # a Network scores data as prepared for training (standardised, class indices) here
    evaluate = getattr(network, "_prepared_evaluate", network.evaluate)
    seed = v.seed("seed", seed)
    rng = np.random.default_rng(seed)
    loss_function = network.loss_function
    # the regression scores of an epoch are taken from its running loss against this
    target_variance = _target_variance(y, weights)
    # an epoch's loss is the mean of its batches' losses weighted by their samples' weights
    total_weight = n if weights is None else float(weights.sum(dtype=np.float64))
    if not np.isfinite(network.params).all():
        raise ValueError("the network's parameters contain NaN or infinity")
    optimizer.start(network.params, epochs)
    # one step function per batch size: the full batches and the last, partial one
    steps = {size: network.train_step(size, optimizer.step_state(), optimizer.update_kind)
             for size in {batch_size, n % batch_size or batch_size}}
    chunks = _chunks(n, batch_size)
    # each chunk's rows are gathered in shuffled order into these buffers just before its
    # call (as a data loader gathers a batch): the training set is never copied whole
    chunk_rows = min(n, STEPS_PER_CALL * batch_size)
    buffers = (np.empty((chunk_rows, *X.shape[1:]), dtype=X.dtype),
               np.empty((chunk_rows, *y.shape[1:]), dtype=y.dtype),
               None if weights is None else np.empty(chunk_rows, dtype=weights.dtype))
    chunk_losses = np.empty(STEPS_PER_CALL)
    chunk_correct = np.empty(STEPS_PER_CALL, dtype=np.intp)
    history = network.history = History(loss_function.score_names)
    settings = {"n_samples": n, "batch_size": batch_size, "seed": seed, "shuffle": bool(shuffle),
                "epochs": epochs, "optimizer": optimizer.config(),
                "sample_weight": None if weights is None else
                hashlib.sha256(weights.tobytes()).hexdigest()}
    checkpoint_path, first_epoch = None, 0
    if checkpoint is not None:
        if not (seed is None or isinstance(seed, int)):  # the checkpoint records it (JSON)
            raise ValueError(f"a checkpointed fit takes an integer seed (or None), got "
                             f"{type(seed).__name__}")
        os.makedirs(checkpoint, exist_ok=True)
        checkpoint_path = os.path.join(checkpoint, modelfile.CHECKPOINT_FILE)
        if os.path.exists(checkpoint_path):
            first_epoch = _resume(checkpoint_path, network, optimizer, rng, history, settings)
            if verbose:
                print(f"resuming from {checkpoint_path} after epoch {first_epoch}",
                      file=sys.stderr, flush=True)
    for callback in callbacks:
        callback.on_train_begin(network, history)
    # what divergence restores: the weights and optimizer state at the start, at the end of
    # the last finite epoch and of the one before (one copy an epoch, outside the steps)
    start_snapshot, last_snapshot, previous_snapshot = (
        _Snapshot(first_epoch, network, optimizer), None, None)

    steps_per_epoch = math.ceil(n / batch_size)
    bar = None
    if verbose == 1:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs * steps_per_epoch, initial=first_epoch * steps_per_epoch,
                   unit="step", file=sys.stderr, dynamic_ncols=True, leave=True)
    stoppers = []  # the callbacks that stopped training early
    try:
        for epoch in range(first_epoch, epochs):
            started = time.perf_counter()
            lr = optimizer.lr_at(epoch)
            order = rng.permutation(n) if shuffle else None
            loss_sum, n_correct = 0.0, 0
            for start, size, count in chunks:
                train_step = steps[size]
                X_rows, y_rows, w_rows = _gather_chunk(X, y, weights, order,
                                                       slice(start, start + size * count),
                                                       buffers)
                done, status = train_step.run_many(X_rows, y_rows, count,
                                                   optimizer.step_update(), chunk_losses,
                                                   chunk_correct, w_rows)
                last_loss = float(chunk_losses[done - 1]) if done else 0.0
                diverged = not math.isfinite(last_loss) or status == UPDATE_NOT_FINITE
                optimizer.advance(done - diverged)  # the updates applied (Adam counts them)
                loss_sum += _chunk_loss_sum(chunk_losses[:done], size, w_rows)
                n_correct += int(chunk_correct[:done].sum())
                if diverged:
                    # the failing step's update was not applied; go back to the end of the
                    # last finite epoch (the weights before this step can be huge)
                    layer = _first_nonfinite_layer(train_step)
                    restored = _restore_usable(
                        network, optimizer, X,
                        [last_snapshot, previous_snapshot, start_snapshot])
                    raise TrainingDiverged(epoch, start // batch_size + done - 1, last_loss,
                                           layer, update_overflow=math.isfinite(last_loss),
                                           restored_epoch=restored)
            mean_loss = loss_sum / total_weight
            train_seconds = time.perf_counter() - started  # before the validation scores
            logs = _epoch_logs(epoch, mean_loss, n_correct, n, target_variance, loss_function,
                               lr, evaluate, validation)
            logs["seconds"] = time.perf_counter() - started
            history.append(**logs)
            history.train_seconds.append(train_seconds)
            if math.isfinite(mean_loss):  # reuse the older snapshot's arrays
                previous_snapshot, last_snapshot = last_snapshot, _Snapshot(
                    epoch + 1, network, optimizer, reuse=previous_snapshot)
            if bar is not None:
                bar.update(steps_per_epoch)
                bar.set_postfix_str(_epoch_summary(logs), refresh=False)
            elif verbose == 2:
                print(f"epoch {epoch + 1}/{epochs}  {_epoch_summary(logs)}  "
                      f"{logs['seconds']:.2f}s", flush=True)
            if checkpoint_path and ((epoch + 1) % checkpoint_every == 0 or epoch + 1 == epochs):
                _save_checkpoint(checkpoint_path, epoch + 1, network, optimizer, rng, history,
                                 settings)
            stop = [callback.on_epoch_end(network, epoch + 1, logs) for callback in callbacks]
            if any(stop):
                history.stopped_early = epoch + 1
                stoppers = [callback for callback, said in zip(callbacks, stop) if said]
                break
    except KeyboardInterrupt as error:
        history.interrupted = True
        interrupt = error
        if verbose and report_interrupt:
            print(f"\ntraining interrupted after {len(history)} complete epoch(s); "
                  "the weights and history so far are kept on the network "
                  "(network.history)", file=sys.stderr, flush=True)
    else:
        interrupt = None
    finally:
        if bar is not None:
            bar.close()
    for callback in callbacks:
        callback.on_train_end(network, history)
    if interrupt is not None:
        raise interrupt
    if history.stopped_early and verbose and report_interrupt:
        notes = [getattr(callback, "stop_note", lambda: None)() or
                 f"{type(callback).__name__} stopped training" for callback in stoppers]
        print(f"stopped early after epoch {history.stopped_early}: {'; '.join(notes)}",
              flush=True)
    return history


def _checked_arguments(network, X, y, sample_weight, epochs, batch_size, verbose,
                       validation_data, optimizer, callbacks, checkpoint_every,
                       report_interrupt):
    """:func:`fit`'s arguments checked, in this order (the first problem is the one raised):
    ``(X, y, weights, epochs, batch_size, validation, optimizer, callbacks,
    checkpoint_every, report_interrupt)``, with ``validation`` the pair ``(X_val, y_val)``
    or None, ``batch_size`` at most the number of samples and ``optimizer`` an SGD() for
    None."""
    X = network.check_X(X)
    y = network.check_y(y, X.shape[0])
    n = X.shape[0]
    weights = v.sample_weight(sample_weight, n, network.dtype)
    if n == 0:
        raise ValueError("X is empty: nothing to train on")
    epochs = v.integer("epochs", epochs, minimum=0)
    batch_size = v.integer("batch_size", batch_size)
    if batch_size > n:
        warnings.warn(f"batch_size ({batch_size}) is larger than the training set ({n}): "
                      f"training with one batch of all {n} samples", UserWarning,
                      stacklevel=3)  # fit's caller
        batch_size = n
    if verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
    validation = None
    if validation_data is not None:
        if len(validation_data) != 2:
            raise ValueError("validation_data must be a pair (X_val, y_val)")
        X_val = network.check_X(validation_data[0], "X_val")
        validation = X_val, network.check_y(validation_data[1], X_val.shape[0], "y_val")
    optimizer = SGD() if optimizer is None else optimizer
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be an nncore.optim.Optimizer (nncore.SGD, nncore.Adam, "
                        f"nncore.AdamW), got {type(optimizer).__name__}")
    callbacks = _checked_callbacks(callbacks)
    checkpoint_every = v.integer("checkpoint_every", checkpoint_every)
    report_interrupt = v.boolean("report_interrupt", report_interrupt)
    return (X, y, weights, epochs, batch_size, validation, optimizer, callbacks,
            checkpoint_every, report_interrupt)


def _checked_callbacks(callbacks):
    """``callbacks`` as a list (one callback alone is taken as a list of one), each with the
    three hooks fit calls."""
    if all(callable(getattr(callbacks, hook, None)) for hook in _HOOKS):
        callbacks = [callbacks]
    if isinstance(callbacks, (str, bytes)) or not isinstance(callbacks, Iterable):
        raise TypeError(f"callbacks must be a list of callbacks (such as "
                        f"[nncore.EarlyStopping()]), got {type(callbacks).__name__}")
    callbacks = list(callbacks)
    for i, callback in enumerate(callbacks):
        if isinstance(callback, type):  # the class, where an instance was meant
            raise TypeError(f"callbacks[{i}] is the class {callback.__name__}; give an "
                            f"instance: {callback.__name__}()")
        missing = [hook for hook in _HOOKS if not callable(getattr(callback, hook, None))]
        if missing:
            raise TypeError(f"callbacks[{i}] ({type(callback).__name__}) is not a callback: "
                            f"it has no {', '.join(missing)} (subclass nncore.Callback)")
    return callbacks


#: The methods fit calls on each callback.
_HOOKS = ("on_train_begin", "on_epoch_end", "on_train_end")


def _target_variance(y, weights):
    """The variance of regression targets ``y`` (n, n_outputs), averaged over the outputs
    and weighted by the samples' ``weights`` if given; NaN for class labels."""
    if y.ndim != 2:
        return math.nan
    if weights is None:
        return float(np.mean(np.var(y, axis=0)))
    w64 = weights.astype(np.float64)
    centred = y - np.average(y, axis=0, weights=w64)
    return float(np.mean(np.average(centred ** 2, axis=0, weights=w64)))


def _chunks(n, batch_size):
    """An epoch's chunks, each ``(start row, batch size, steps)``: runs of up to
    STEPS_PER_CALL full batches, then the last, partial batch alone. Each chunk is one call
    into compiled code; between chunks Python can see a Ctrl-C."""
    full, rest = divmod(n, batch_size)
    chunks = [(first * batch_size, batch_size, min(STEPS_PER_CALL, full - first))
              for first in range(0, full, STEPS_PER_CALL)]
    if rest:
        chunks.append((full * batch_size, rest, 1))
    return chunks


def _gather_chunk(X, y, weights, order, rows, buffers):
    """The rows of one chunk, ``rows`` (a slice of the epoch's positions), as
    ``(X_rows, y_rows, w_rows)``: views of ``X``, ``y`` and ``weights`` when there is no
    shuffling ``order``, else the rows ``order[rows]`` gathered into the front of
    ``buffers`` (``fit``'s preallocated ``X``, ``y`` and weight buffers) without allocating.
    ``w_rows`` is None without weights."""
    if order is None:
        return X[rows], y[rows], None if weights is None else weights[rows]
    X_chunk, y_chunk, w_chunk = buffers
    chosen, count = order[rows], rows.stop - rows.start
    # mode="clip" (the order is a permutation, never out of range): with the
    # default mode="raise" NumPy buffers `out`, a hidden copy
    X_rows, y_rows = X_chunk[:count], y_chunk[:count]
    np.take(X, chosen, axis=0, out=X_rows, mode="clip")
    np.take(y, chosen, axis=0, out=y_rows, mode="clip")
    w_rows = None
    if weights is not None:
        w_rows = w_chunk[:count]
        np.take(weights, chosen, out=w_rows, mode="clip")
    return X_rows, y_rows, w_rows


def _chunk_loss_sum(losses, size, w_rows):
    """The sum of a chunk's batch ``losses``, each weighted by its batch's samples: by their
    number ``size``, or by the sum of their weights (``w_rows``, the chunk's weights)."""
    if w_rows is None:
        return float(losses.sum()) * size
    batch_weights = w_rows[:size * losses.size].reshape(losses.size, size)
    return float(np.dot(losses, batch_weights.sum(axis=1, dtype=np.float64)))


def _epoch_logs(epoch, mean_loss, n_correct, n, target_variance, loss_function, lr, evaluate,
                validation):
    """The row of History for the 0-based ``epoch``, but for its seconds: its loss and
    scores, and the scores of ``validation`` (X_val, y_val) by ``evaluate``, NaN without."""
    logs = {"epoch": epoch + 1, "loss": mean_loss,
            **loss_function.epoch_scores(mean_loss, n_correct, n, target_variance),
            "val_loss": math.nan,
            **{f"val_{name}": math.nan for name in loss_function.score_names},
            "lr": lr}
    if validation is not None:
        logs.update({f"val_{key}": value for key, value in evaluate(*validation).items()})
    return logs


class _Snapshot:
    """A copy of the weights and the optimizer's state after ``epoch`` epochs (0: the start);
    ``reuse`` another snapshot's arrays rather than allocate."""

    def __init__(self, epoch, network, optimizer, reuse=None):
        self.epoch, self.counters = epoch, optimizer.counters()
        if reuse is None:
            self.params = network.params.copy()
            self.state = {name: np.array(array) for name, array in optimizer.state().items()}
        else:
            self.params, self.state = reuse.params, reuse.state
            np.copyto(self.params, network.params)
            for name, array in optimizer.state().items():
                np.copyto(self.state[name], array)

    def restore(self, network, optimizer):
        network.params[...] = self.params
        optimizer.load_state(self.state, self.counters)


def _restore_usable(network, optimizer, X, snapshots):
    """Give ``network`` and ``optimizer`` back the latest of ``snapshots`` (latest first,
    None skipped) whose outputs on the training set ``X`` are finite, or the latest one if
    none is (the data itself overflows); returns its epoch. Run once, after divergence."""
    snapshots = [snapshot for snapshot in snapshots if snapshot is not None]
    for snapshot in snapshots:
        snapshot.restore(network, optimizer)
        try:
            with np.errstate(all="ignore"):
                # raises ValueError when the outputs overflow (X as training sees it)
                getattr(network, "_prepared_logits", network.logits)(X)
            return snapshot.epoch
        except ValueError:
            continue
    snapshots[0].restore(network, optimizer)
    return snapshots[0].epoch


def _save_checkpoint(path, epochs_done, network, optimizer, rng, history, settings):
    """Write the run's state after ``epochs_done`` epochs to the checkpoint ``path`` (what
    :func:`_resume` reads back)."""
    state = {"epochs_done": epochs_done, "rng": rng.bit_generator.state,
             "history": history.history, "settings": settings}
    modelfile.save_checkpoint(path, network.state(), _optimizer_state(optimizer), state)


def _optimizer_state(optimizer):
    """What a checkpoint keeps of the optimizer: its name, state arrays and counters."""
    return {"name": optimizer.name, "arrays": optimizer.state(),
            "counters": optimizer.counters()}


def _resume(path, network, optimizer, rng, history, settings):
    """Restore a checkpoint into the run; returns the number of epochs already done."""
    saved_network, saved_optimizer, state = modelfile.load_checkpoint(path)
    if saved_network["layers"] != network.layer_specs() \
            or saved_network["dtype"] != network.dtype.name \
            or saved_network["loss"] != network.loss_function.name:
        raise ValueError(f"the checkpoint {path!r} holds a different network "
                         f"({saved_network['layers']}, {saved_network['dtype']}, "
                         f"{saved_network['loss']})")
    if saved_optimizer["name"] != optimizer.name:
        raise ValueError(f"the checkpoint {path!r} was written by optimizer "
                         f"{saved_optimizer['name']!r}, this run uses {optimizer.name!r}; use "
                         "another checkpoint folder")
    saved = state.get("settings", {})
    for key, value in settings.items():
        if key != "epochs" and saved.get(key) != value:
            raise ValueError(f"the checkpoint {path!r} was written with {key}={saved.get(key)!r}, "
                             f"this run has {key}={value!r}; use another checkpoint folder")
    if saved.get("epochs") != settings["epochs"] and schedule_uses_epochs(optimizer.schedule):
        warnings.warn(f"the checkpoint {path!r} was written by a run of "
                      f"{saved.get('epochs')} epochs; with epochs={settings['epochs']} the "
                      f"{optimizer.schedule} learning-rate schedule is spread over "
                      f"{settings['epochs']} epochs from here on, so this run ends like "
                      f"neither an uninterrupted run of {saved.get('epochs')} nor one of "
                      f"{settings['epochs']} epochs", UserWarning, stacklevel=3)  # fit's caller
    network.params[...] = saved_network["params"]
    optimizer.load_state(saved_optimizer["arrays"], saved_optimizer["counters"])
    rng.bit_generator.state = state["rng"]
    for column in history.columns:
        history.history[column] = list(state["history"][column])
    return int(state["epochs_done"])


#: How the progress line abbreviates a score.
_SHORT = {"accuracy": "acc"}


def _epoch_summary(logs):
    scores = [key for key in logs if key not in ("epoch", "lr", "seconds")
              and not key.startswith("val_")]
    text = " ".join(f"{_SHORT.get(key, key)} {logs[key]:.4f}" for key in scores)
    if not math.isnan(logs["val_loss"]):
        text += " " + " ".join(f"val_{_SHORT.get(key, key)} {logs['val_' + key]:.4f}"
                               for key in scores)
    return text
