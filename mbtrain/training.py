"""The training loop: a thin Python driver around a backend's ``sgd_epoch``.

The driver owns what is not arithmetic: argument checks, the shuffle order
(indices, never a shuffled copy of the data), timing, monitoring, the history
and the divergence check. The arithmetic of an epoch is one backend call.
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd

from . import _validation as v
from .backends import get_backend


class TrainingDiverged(FloatingPointError):
    """Raised when a parameter or the loss stops being finite.

    The network is left with the last finite parameters (those before the
    offending mini-batch); ``epoch`` and ``batch`` say where it happened.
    """

    def __init__(self, message, epoch, batch):
        super().__init__(message)
        self.epoch = epoch
        self.batch = batch


def loss_and_accuracy(net, X, Y, labels, lmbda, n):
    """Loss (as :meth:`Network.loss`) and accuracy of checked arrays, one forward pass."""
    with np.errstate(over="ignore", invalid="ignore"):  # a diverging run is reported, not warned about
        z, a = net._feedforward(X)
        cost = float(np.mean(net.cost.fn(z, a, Y), dtype=np.float64))
        if lmbda:
            cost += lmbda / (2 * n) * sum(float(np.sum(np.square(w, dtype=np.float64))) for w in net.weights)
    return cost, float(np.mean(a.argmax(axis=1) == labels))


def fit(net, X, y, *, epochs, batch_size, eta, lmbda=0.0, backend="numba", shuffle=True,
        seed=None, validation_data=None, monitor=True):
    """Train ``net`` in place by mini-batch SGD and return the per-epoch history.

    Parameters
    ----------
    net : Network
    X : array (n_samples, n_features)
        Cast once to the network's dtype (no copy when it already is it).
    y : int labels (n_samples,) or target matrix (n_samples, sizes[-1])
    epochs, batch_size : int >= 1
        The last short mini-batch is used, not dropped.
    eta : float > 0
        Learning rate; the update is ``w <- (1 - eta*lmbda/n) w - (eta/m) sum grad C_x``
        with ``n`` training rows and ``m`` rows in the mini-batch.
    lmbda : float >= 0
        L2 strength (never applied to biases).
    backend : {"numba", "numpy", "loop"}
    shuffle : bool
        Shuffle the row order each epoch (indices only).
    seed : int or None
        None draws the shuffle order from ``net.rng`` (so two calls of 5 epochs
        equal one of 10); an int reseeds ``net.rng`` first.
    validation_data : (X_val, y_val) or None
    monitor : bool
        False records only ``epoch`` and ``seconds`` (for benchmarking).

    Returns
    -------
    pandas.DataFrame, one row per epoch: ``epoch``, ``seconds`` (run time of the
    epoch's arithmetic; compilation is in ``history.attrs["compile_seconds"]``),
    ``examples_per_second`` and, when monitoring, ``train_loss``,
    ``train_accuracy`` (on the full training set at epoch end) and
    ``val_loss``, ``val_accuracy`` when validation data is given. The same
    rows are appended to ``net.history``.

    Raises
    ------
    TrainingDiverged
        A parameter became NaN or inf; ``net`` keeps the last finite parameters.
    """
    impl = get_backend(backend)
    epochs = v.check_positive_int(epochs, "epochs")
    batch_size = v.check_positive_int(batch_size, "batch_size")
    eta = v.check_positive_float(eta, "eta")
    lmbda = v.check_nonnegative_float(lmbda, "lmbda")
    X = np.ascontiguousarray(net._check_X(X))
    Y = np.ascontiguousarray(net._check_targets(X, y))
    labels = Y.argmax(axis=1)
    n = X.shape[0]
    if validation_data is not None:
        try:
            X_val, y_val = validation_data
        except (TypeError, ValueError):
            raise TypeError("validation_data: expected a pair (X_val, y_val)") from None
        X_val = net._check_X(X_val, name="validation_data[0]")
        Y_val = net._check_targets(X_val, y_val, name="validation_data[1]")
        labels_val = Y_val.argmax(axis=1)
    if seed is not None:
        net.rng = np.random.default_rng(seed)

    compile_seconds = _compile(impl, net)
    previous = getattr(net, "history", None)
    first_epoch = 1 if previous is None or previous.empty else int(previous["epoch"].iloc[-1]) + 1
    rows = []
    for epoch in range(first_epoch, first_epoch + epochs):
        order = net.rng.permutation(n) if shuffle else np.arange(n)
        before = net.params.copy()
        start = time.perf_counter()
        bad_batch = impl.sgd_epoch(net, X, Y, order, batch_size, eta, lmbda, n)
        seconds = time.perf_counter() - start
        if bad_batch >= 0:
            _restore_before(net, impl, before, X, Y, order, batch_size, bad_batch, eta, lmbda, n)
            raise TrainingDiverged(
                f"training diverged in epoch {epoch}, mini-batch {bad_batch} (rows "
                f"{bad_batch * batch_size}..{min((bad_batch + 1) * batch_size, n) - 1} of the epoch's order): "
                f"a parameter became NaN or inf with eta={eta}. The network keeps the parameters "
                "from before that mini-batch; try a smaller eta.",
                epoch=epoch, batch=bad_batch,
            )
        row = {"epoch": epoch, "seconds": seconds, "examples_per_second": n / seconds if seconds > 0 else np.inf}
        if monitor:
            row["train_loss"], row["train_accuracy"] = loss_and_accuracy(net, X, Y, labels, lmbda, n)
            if not np.isfinite(row["train_loss"]):
                net.params[...] = before
                raise TrainingDiverged(
                    f"training diverged in epoch {epoch}: the training loss is {row['train_loss']}. "
                    f"The network keeps the parameters from before epoch {epoch}; try a smaller eta.",
                    epoch=epoch, batch=None,
                )
            if validation_data is not None:
                row["val_loss"], row["val_accuracy"] = loss_and_accuracy(
                    net, X_val, Y_val, labels_val, lmbda, n)
        rows.append(row)

    history = pd.DataFrame(rows)
    history.attrs["compile_seconds"] = compile_seconds
    history.attrs["backend"] = impl.name
    net.history = history if previous is None or previous.empty else pd.concat(
        [previous, history], ignore_index=True)
    return history


def _restore_before(net, impl, before, X, Y, order, batch_size, bad_batch, eta, lmbda, n):
    """Leave ``net`` as it was just before mini-batch ``bad_batch``: replay the epoch up to it.

    Replaying (deterministic) costs nothing on the normal path, unlike keeping a
    copy of the parameters before every mini-batch.
    """
    net.params[...] = before
    if bad_batch > 0:
        impl.sgd_epoch(net, X, Y, order[:bad_batch * batch_size], batch_size, eta, lmbda, n)


def _compile(impl, net) -> float:
    """Compile the backend's kernels before the first timed epoch; returns seconds.

    With numba's on-disk cache warm this is loading, not compiling; either way it
    is reported apart (``history.attrs["compile_seconds"]``) so epoch times are
    run times only.
    """
    if impl.name != "numba":
        return 0.0
    from .backends.numba_matrix import compile_kernels

    return compile_kernels(net.dtype.name)
