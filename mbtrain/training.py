"""The training loop: a thin Python driver around a backend's ``optimizer_epoch``.

The driver owns what is not arithmetic: argument checks, the shuffle order
(indices, never a shuffled copy of the data), the learning-rate schedule, the
optimizer's state (kept by the network, put back with the parameters when an
epoch is interrupted or diverges), timing, monitoring, progress, the history,
callbacks, checkpoints, Ctrl-C and the divergence check. The arithmetic of an
epoch is one backend call (a few, when a progress bar is shown, so it can move).
"""
from __future__ import annotations

import contextlib
import sys
import time
from typing import NamedTuple

import numpy as np
import pandas as pd
from tqdm import tqdm  # the text bar: tqdm.auto wants ipywidgets in notebooks

from . import _validation as v
from .backends import DEFAULT_BACKEND, FINITE, Evaluation, get_backend
from .backends._targets import row_labels
from .callbacks import EarlyStopping
from .optim import OptimizerState, get_optimizer
from .schedules import get_schedule
from .serialization import save

_GATHER_BYTES = 16 * 2**20  # rows gathered per backend call from an X that is not C-contiguous
_PROGRESS_STEPS = 50  # progress bar updates per epoch


class TrainingDiverged(FloatingPointError):
    """Raised when a parameter or the loss stops being finite.

    The network is left with the last finite parameters and optimizer state
    (those before the offending mini-batch, or before the epoch whose loss was
    not finite); ``epoch`` and ``batch`` say where it happened.
    """

    def __init__(self, message, epoch, batch):
        super().__init__(message)
        self.epoch = epoch
        self.batch = batch


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during ``fit``: the network holds the last completed epoch (parameters, optimizer state, random stream).

    ``epoch`` is the last completed epoch (0 if none), ``checkpoint`` the file
    that holds it (or None); ``net.history`` has every completed epoch.
    """

    def __init__(self, message, epoch, checkpoint):
        super().__init__(message)
        self.epoch = epoch
        self.checkpoint = checkpoint


def _check_evaluation_arrays(net, X, Y, labels) -> None:
    """Shapes only (``evaluate`` takes checked arrays): never broadcast a wrong shape into a number."""
    m, k = X.shape[0], net.sizes[-1]
    if X.ndim != 2 or X.shape[1] != net.sizes[0]:
        raise ValueError(f"X: expected shape (n, {net.sizes[0]}), got {X.shape}")
    if not (Y.ndim == 1 and Y.shape[0] == m and Y.dtype.kind in "iu" or Y.shape == (m, k)):
        raise ValueError(f"Y: expected {m} integer labels or a ({m}, {k}) target matrix, got shape {Y.shape} "
                         f"of {Y.dtype}")
    if labels.shape != (m,) or labels.dtype.kind not in "iu":
        raise ValueError(f"labels: expected {m} integer labels, shape ({m},), got shape {labels.shape} "
                         f"of {labels.dtype}")


def evaluate(net, X, Y, labels, lmbda, n, gradient_norms=False, backend=DEFAULT_BACKEND) -> Evaluation:
    """Loss (as :meth:`Network.loss`), cost, accuracy and, optionally, per-layer gradient norms.

    Checked arrays (``Y`` integer labels or a target matrix, ``labels`` integer
    labels); the arithmetic is the backend's :meth:`~mbtrain.backends.Backend.evaluate`,
    in chunks of rows sized by :func:`~mbtrain.backends.eval_chunk_rows`.
    """
    _check_evaluation_arrays(net, X, Y, labels)
    return get_backend(backend).evaluate(net, X, Y, labels, lmbda, n, gradient_norms=gradient_norms)


def fit(net, X, y, *, epochs, batch_size, eta, lmbda=0.0, backend="numba", shuffle=True,
        seed=None, validation_data=None, monitor=True, progress=None, callbacks=(),
        early_stopping=None, checkpoint=None, optimizer="sgd", schedule=None):
    """Train ``net`` in place by mini-batch SGD (or momentum, Nesterov, Adam) and return the per-epoch history.

    Parameters
    ----------
    net : Network
        Its parameters must be finite (a network holding NaN or inf is refused).
    X : array (n_samples, n_features)
        Cast once to the network's dtype (no copy when it already is it; a
        float32 ``X`` is read as it is by a float64 network). The rows of an
        ``X`` that is not C-contiguous (a Fortran-order memory map, a strided
        view) are gathered per block of mini-batches, never copied whole.
        Inputs far outside [0, 1] (root mean square above 3) get a
        ``UserWarning``: sigmoid units saturate on them.
    y : int labels (n_samples,) or target matrix (n_samples, sizes[-1])
    epochs, batch_size : int >= 1
        The last short mini-batch is used, not dropped.
    eta : float > 0
        Learning rate (of the first epoch, with a ``schedule``); SGD's update is
        ``w <- (1 - eta*lmbda/n) w - (eta/m) sum grad C_x`` with ``n`` training
        rows and ``m`` rows in the mini-batch.
    lmbda : float >= 0
        L2 strength (never applied to biases): every optimizer steps on the
        gradient of the loss, ``(lmbda/n) W`` included.
    backend : {"numba", "numpy", "loop"}
    shuffle : bool
        Shuffle the row order each epoch (indices only).
    seed : int or None
        None draws the shuffle order from ``net.rng``, so two calls of 5 epochs
        leave exactly the weights of one call of 10; an int reseeds ``net.rng``.
    validation_data : (X_val, y_val) or None
    monitor : bool
        False records only ``epoch``, ``seconds`` and ``examples_per_second``
        and computes nothing else per epoch (for benchmarking).
    progress : bool or None
        A progress bar per epoch on stderr; None shows it only on a terminal.
    callbacks : sequence of callables ``(net, history) -> bool | None``
        Called after each epoch with this call's history so far; True stops.
    early_stopping : int, EarlyStopping or None
        Stop when ``val_accuracy`` has not improved for that many epochs (an
        int is the patience) and restore the best epoch's parameters.
    checkpoint : path or None
        Save the network (atomically) after every epoch, and once more when
        early stopping has restored the best epoch, so the file always holds
        the parameters the network holds.
    optimizer : {"sgd", "momentum", "nesterov", "adam"} or mbtrain.optim.Optimizer
        The update rule (definitions in :mod:`mbtrain.optim`; a name takes the
        default hyperparameters, e.g. ``mbtrain.optim.Adam(beta1=0.8)`` others).
        Its state (velocity; Adam's moments and step) is kept in
        ``net.optimizer_state`` and continued by the next ``fit`` with the
        same optimizer and hyperparameters, so two calls of 5 epochs equal one
        of 10; another optimizer starts a fresh state (SGD keeps none).
        ``history.attrs["optimizer"]`` is its description and
        ``history.attrs["optimizer_state"]`` says ``"fresh"``, ``"continued"``,
        ``"none"`` (SGD), and which state was replaced.
    schedule : None, {"constant", "book", "step", "cosine"}, Schedule or callable
        The learning rate per epoch (see :mod:`mbtrain.schedules`); epochs are
        counted from 1 in each call. ``"book"`` halves eta when
        ``val_accuracy`` has not improved for 10 epochs and stops when it falls
        below ``eta / 128``; a callable ``epoch -> factor`` scales ``eta``.

    Returns
    -------
    pandas.DataFrame, one row per epoch: ``epoch``, ``eta`` (the learning rate
    the epoch used), ``seconds`` (run time of the
    epoch's arithmetic; compilation is in ``history.attrs["compile_seconds"]``,
    the backend's once-per-fit preparation of the rows in ``input_seconds``),
    ``examples_per_second``; when monitoring also, on the full training set at
    epoch end, ``train_loss`` (mean cost plus the L2 term
    ``lmbda/(2n) sum ||W||^2``: what SGD minimises, :meth:`Network.loss` with
    ``lmbda``), ``train_cost`` (the mean cost alone, ``Network.loss`` with
    ``lmbda=0``, comparable across ``lmbda`` and with ``mbtrain evaluate``'s
    test loss) and ``train_accuracy``; with validation data ``val_loss``,
    ``val_cost`` (the same two, on the validation rows, with the training
    set's ``n``) and ``val_accuracy``; and ``grad_norm_1`` ... (layers numbered from 1, ``W1 = net.weights[0]``; the norm of
    the full training-set gradient of each layer's weights). The rows are also
    appended to ``net.history``, whose epochs continue across calls.

    Raises
    ------
    TrainingDiverged
        A parameter, the optimizer's state or the loss became NaN or inf;
        ``net`` keeps the last finite parameters and state.
    TrainingInterrupted
        Ctrl-C; ``net`` keeps the last completed epoch (also on disk with
        ``checkpoint``).
    """
    impl = get_backend(backend)
    epochs = v.check_positive_int(epochs, "epochs")
    batch_size = v.check_positive_int(batch_size, "batch_size")
    eta = v.check_positive_float(eta, "eta")
    lmbda = v.check_nonnegative_float(lmbda, "lmbda")
    optimizer = get_optimizer(optimizer)
    schedule = get_schedule(schedule, epochs=epochs)
    _check_finite_parameters(net)
    # float32 rows are widened exactly per batch, not copied whole; the checking pass also measures the
    # inputs' scale (one read of a memory-mapped file), for the warning about unscaled inputs
    X = net._check_X(X, keep_float32=True, warn_unscaled=True, stacklevel=3)
    # integer labels stay labels (each backend expands its mini-batch): no (n, k) matrix of the set
    Y = np.ascontiguousarray(net._check_targets(X, y, keep_labels=True))
    labels = row_labels(Y)
    n = X.shape[0]
    validation = net._check_validation(validation_data)
    watchers = _watchers(callbacks, early_stopping, validation, monitor)
    schedule.reset()
    schedule.check(eta, validation is not None and monitor)  # a callable's factor for epoch 1 among others
    state, state_note = _optimizer_state(net, optimizer)
    if seed is not None:
        net.rng = np.random.default_rng(seed)
    show_progress = sys.stderr.isatty() if progress is None else bool(progress)

    with impl.training_context():
        return _fit(net, impl, X, Y, labels, n, epochs, batch_size, eta, lmbda, shuffle, validation, monitor,
                    show_progress, watchers, checkpoint, _Plan(optimizer, state, state_note, schedule))


def _check_finite_parameters(net) -> None:
    """Refuse to train a network holding NaN or inf: divergence could only "restore" them."""
    bad = ~np.isfinite(net.params)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"net: parameter {i} ({net._describe(i)}) is {float(net.params[i])!r}; a network "
                         "must hold finite parameters to be trained (set new ones with net.set_params, or "
                         "build a new Network)")


class _Plan(NamedTuple):
    """What updates the parameters in this fit: the optimizer, its working state, the schedule."""

    optimizer: object
    state: OptimizerState | None  #: the state the epochs update in place (None for SGD)
    state_note: str  #: history.attrs["optimizer_state"]
    schedule: object
    inputs: object = None  #: the training rows as the backend's epochs read them (``Backend.epoch_inputs``)
    input_seconds: float = 0.0  #: what making ``inputs`` took (history.attrs["input_seconds"])


def _optimizer_state(net, optimizer) -> tuple[OptimizerState | None, str]:
    """The state this fit continues or starts, and what ``history.attrs["optimizer_state"]`` says of it."""
    kept = getattr(net, "optimizer_state", None)
    if kept is not None and not isinstance(kept, OptimizerState):
        raise ValueError(f"net.optimizer_state: expected an mbtrain.optim.OptimizerState or None, got {kept!r}")
    if not optimizer.state_names:
        return None, "none" if kept is None else f"none (sgd keeps no state; the network's state for {kept.label} " \
                                                 "was dropped)"
    if kept is not None and kept.is_for(optimizer):
        kept.check(net.layout.size, net.dtype, "net.optimizer_state")
        return kept, "continued"
    note = "fresh" if kept is None else f"fresh (the network's state was for {kept.label})"
    return optimizer.new_state(net.layout.size, net.dtype), note


def _fit(net, impl, X, Y, labels, n, epochs, batch_size, eta, lmbda, shuffle, validation, monitor,
         show_progress, watchers, checkpoint, plan):
    # compiled (or loaded from numba's cache) before the first timed epoch, and reported apart
    compile_seconds = impl.prepare(net, batch_size, Y=Y, X=X, optimizer=plan.optimizer)
    start = time.perf_counter()
    inputs = impl.epoch_inputs(net, X)  # once per fit, like the input checks; reported apart from the epochs
    plan = plan._replace(inputs=inputs, input_seconds=time.perf_counter() - start)
    previous = getattr(net, "history", None)
    previous = None if previous is None or previous.empty else previous
    first_epoch = 1 if previous is None else int(previous["epoch"].iloc[-1]) + 1
    rows = []
    history = _history_frame(rows, compile_seconds, impl.name, plan)
    state = plan.state
    try:
        for epoch in range(first_epoch, first_epoch + epochs):
            epoch_eta = plan.schedule.eta(epoch - first_epoch + 1, eta)  # checked before the epoch uses it
            rng_state = net.rng.bit_generator.state
            before = net.params.copy()
            kept = getattr(net, "optimizer_state", None)  # what the network holds after its last completed epoch
            start_state = None if state is None else state.copy()
            net.optimizer_state = state
            try:
                order = net.rng.permutation(n) if shuffle else np.arange(n)
                seconds, bad_batch = _run_epoch(impl, net, X, Y, order, batch_size, epoch_eta, lmbda, plan,
                                                show_progress, f"epoch {epoch}")
            except KeyboardInterrupt:
                _put_back(net, before, state, start_state, kept)
                net.rng.bit_generator.state = rng_state
                raise
            if bad_batch != FINITE:
                _restore_before(net, impl, before, start_state, X, Y, order, batch_size, bad_batch, epoch_eta,
                                lmbda, n, plan)
                raise TrainingDiverged(
                    f"training diverged in epoch {epoch}, mini-batch {bad_batch} (rows "
                    f"{bad_batch * batch_size}..{min((bad_batch + 1) * batch_size, n) - 1} of the epoch's "
                    f"order): a parameter{'' if state is None else ' or a value of the optimizer state'} "
                    f"became NaN or inf with eta={epoch_eta} ({plan.optimizer!r}). The network keeps the "
                    f"parameters{'' if state is None else ' and the state'} from before that mini-batch; try a "
                    "smaller eta.",
                    epoch=epoch, batch=bad_batch,
                )
            row = {"epoch": epoch, "eta": epoch_eta, "seconds": seconds,
                   "examples_per_second": n / seconds if seconds > 0 else np.inf}
            if monitor:
                metrics = _monitor(impl, net, X, Y, labels, lmbda, n, validation)
                if not np.isfinite(metrics["train_loss"]):
                    _put_back(net, before, state, start_state, kept)
                    raise TrainingDiverged(
                        f"training diverged in epoch {epoch}: the training loss is {metrics['train_loss']}. "
                        f"The network keeps the parameters from before epoch {epoch}; try a smaller eta.",
                        epoch=epoch, batch=None,
                    )
                row.update(metrics)
            rows.append(row)
            history = _history_frame(rows, compile_seconds, impl.name, plan)
            net.history = history if previous is None else pd.concat([previous, history], ignore_index=True)
            if checkpoint is not None:
                save(net, checkpoint)
            stop = False
            for watch in watchers:
                stop = bool(watch(net, history)) or stop
            if plan.schedule.observe(net, history):
                history.attrs["schedule_stopped_epoch"] = epoch
                stop = True
            if stop:
                break
    except KeyboardInterrupt:
        done = rows[-1]["epoch"] if rows else first_epoch - 1
        where = f"; saved in {checkpoint}" if checkpoint is not None and rows else ""
        message = (f"training interrupted during epoch {done + 1}: the network holds the parameters "
                   f"after epoch {done}{where}")
        print(f"mbtrain: {message}", file=sys.stderr)
        raise TrainingInterrupted(message, epoch=done, checkpoint=checkpoint if rows else None) from None
    finally:
        restored = [watch.finish(net) for watch in watchers if isinstance(watch, EarlyStopping)]
        if any(restored) and checkpoint is not None and rows:
            save(net, checkpoint)  # the file holds what the network now holds: the best epoch
    return history


def _put_back(net, before, state, start_state, kept) -> None:
    """The network as it was before the epoch: parameters, the working state's values, the state it held."""
    net.params[...] = before
    if state is not None:
        state.assign(start_state)
    net.optimizer_state = kept


def _monitor(impl, net, X, Y, labels, lmbda, n, validation) -> dict:
    """The epoch's monitoring columns (the caller checks that ``train_loss`` is finite)."""
    train = impl.evaluate(net, X, Y, labels, lmbda, n, gradient_norms=True)
    row = {"train_loss": train.loss, "train_cost": train.cost, "train_accuracy": train.accuracy}
    if not np.isfinite(train.loss):
        return row
    if validation is not None:
        val = impl.evaluate(net, *validation, lmbda, n)
        row |= {"val_loss": val.loss, "val_cost": val.cost, "val_accuracy": val.accuracy}
    return row | {f"grad_norm_{l}": norm for l, norm in enumerate(train.grad_norms, 1)}  # W1 first, as gradcheck


def _watchers(callbacks, early_stopping, validation, monitor):
    if callable(callbacks):
        callbacks = [callbacks]
    watchers = list(callbacks or ())
    for i, cb in enumerate(watchers):
        if not callable(cb):
            raise TypeError(f"callbacks[{i}]: expected a callable (net, history) -> bool, got {cb!r}")
    if early_stopping is not None:
        if not isinstance(early_stopping, EarlyStopping):
            early_stopping = EarlyStopping(patience=early_stopping)
        if validation is None or not monitor:
            raise ValueError("early_stopping: needs validation_data and monitor=True")
        early_stopping.reset()
        watchers.append(early_stopping)
    return watchers


def _run_epoch(impl, net, X, Y, order, batch_size, eta, lmbda, plan, show_progress, label):
    """One epoch; returns ``(seconds, bad_batch)``, ``bad_batch`` -1 or the first diverged mini-batch.

    One backend call, or several of whole mini-batches each: to move a progress
    bar, and to gather the rows of an ``X`` that is not C-contiguous (a
    Fortran-order memory map, a strided view) into a small C-contiguous block
    per call, since the backends read rows. Same mini-batches, same arithmetic.
    """
    n, gather = X.shape[0], not X.flags.c_contiguous
    batches_per_call = -(-len(order) // batch_size)
    if show_progress:
        batches_per_call = max(1, -(-batches_per_call // _PROGRESS_STEPS))
    if gather:
        row_bytes = X.shape[1] * X.itemsize
        batches_per_call = min(batches_per_call, max(1, _GATHER_BYTES // (row_bytes * batch_size)))
    step = batches_per_call * batch_size
    bar = None
    if show_progress:
        bar = tqdm(total=len(order), desc=label, unit="ex", unit_scale=True, leave=False, file=sys.stderr)
    seconds = 0.0
    with bar if bar is not None else contextlib.nullcontext():
        for offset in range(0, len(order), step):
            start = time.perf_counter()
            rows = order[offset:offset + step]
            if gather:  # reading the rows is part of the epoch's work: timed
                X_part, Y_part, rows = np.ascontiguousarray(X[rows]), Y[rows], np.arange(len(rows))
            else:
                X_part, Y_part = (X if plan.inputs is None else plan.inputs), Y
            bad = impl.optimizer_epoch(net, X_part, Y_part, rows, batch_size, eta, lmbda, n, plan.optimizer,
                                       plan.state)
            seconds += time.perf_counter() - start
            if bad != FINITE:
                return seconds, offset // batch_size + bad
            if bar is not None:
                bar.update(len(rows))
    return seconds, FINITE


def _history_frame(rows, compile_seconds, backend, plan):
    history = pd.DataFrame(rows, columns=None if rows else ["epoch", "eta", "seconds", "examples_per_second"])
    history.attrs["compile_seconds"] = compile_seconds
    history.attrs["input_seconds"] = plan.input_seconds
    history.attrs["backend"] = backend
    history.attrs["optimizer"] = plan.optimizer.describe()
    history.attrs["optimizer_state"] = plan.state_note
    history.attrs["schedule"] = plan.schedule.describe()
    return history


def _restore_before(net, impl, before, start_state, X, Y, order, batch_size, bad_batch, eta, lmbda, n, plan):
    """Leave ``net`` as it was just before mini-batch ``bad_batch``: replay the epoch up to it.

    Replaying (deterministic) costs nothing on the normal path, unlike keeping a
    copy of the parameters and the optimizer state before every mini-batch.
    ``before`` and ``start_state`` (the epoch's start) are finite, as ``fit``
    checks; should the replay not end finite, they are what the network keeps.
    """
    state = plan.state
    net.params[...] = before
    if state is not None:
        state.assign(start_state)
    if bad_batch > 0:
        _run_epoch(impl, net, X, Y, order[:bad_batch * batch_size], batch_size, eta, lmbda, plan, False, "")
        if not np.isfinite(net.params).all() or state is not None and state.first_nonfinite() is not None:
            net.params[...] = before
            if state is not None:
                state.assign(start_state)
    net.optimizer_state = state
