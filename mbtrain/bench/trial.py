"""One run of a sweep: train from a seed's initialization to a target validation accuracy.

:func:`train_to_target` is the loop (evaluations at mini-batch boundaries, the
optimizer's step through the backend protocol, the gradient noise scale at
chosen epochs); :func:`run_trial` wraps it for a worker process or the serial
driver in :mod:`mbtrain.bench.sweep`, as the rows of results.csv it yields.
"""
from __future__ import annotations

import contextlib
import math
import os
import time

from .. import training
from ..backends import get_backend
from ..network import Network
from ..optim import from_description, get_optimizer
from .machine import thread_limits
from .noise import gradient_noise_scale

TRAIN_EVAL_ROWS = 10_000  # training loss/accuracy of the curves: on the first rows (the data is already shuffled)
NOISE_ROWS = 4096  # per-example gradients in each noise-scale estimate


def _segments(n, batch_size, evals_per_epoch):
    """Mini-batch indices where an epoch is split for evaluation: ``[0, ..., steps_per_epoch]``."""
    steps = math.ceil(n / batch_size)
    cuts = sorted({round(k * steps / evals_per_epoch) for k in range(evals_per_epoch + 1)})
    return steps, cuts


def _segment_batch_sizes(n, batch_size, cuts) -> list[int]:
    """The batch sizes the epoch kernel is called with: ``batch_size``, or fewer rows when a segment is shorter."""
    rows = [min(last * batch_size, n) - first * batch_size for first, last in zip(cuts[:-1], cuts[1:])]
    return sorted({min(batch_size, r) for r in rows if r > 0})


def train_to_target(net, X, Y, X_val, Y_val, *, batch_size, eta, lmbda=0.0, target=0.85, max_epochs=30,
                    evals_per_epoch=4, backend="numba", on_eval=None, on_noise=None, noise_epochs=(),
                    optimizer="sgd") -> dict:
    """Train ``net`` in place until validation accuracy ``>= target`` or ``max_epochs``; return the summary.

    ``X``, ``Y`` (one-hot) and the validation arrays are already in the
    network's dtype. The shuffle order comes from ``net.rng``, as in
    :meth:`Network.fit`. ``optimizer`` (a name or an :class:`mbtrain.optim.Optimizer`)
    steps through the backend's ``optimizer_epoch``, from a fresh state that
    lasts the whole run (evaluation points do not reset it). ``on_eval(point)`` receives each evaluation (a dict with
    ``epoch`` (fractional), ``steps``, ``seconds``, losses and accuracies, and the
    ``on_noise(point, estimate)`` receives the gradient noise scale (see
    :func:`mbtrain.bench.noise.gradient_noise_scale`, on up to ``NOISE_ROWS``
    training rows) at the epochs in ``noise_epochs`` and where the run stops.

    Before the clock starts, the backend compiles (or loads from its cache)
    the epoch kernels of this run, in this process (:meth:`prepare`, for each
    batch size a segment of an epoch is called with): a worker process fresh
    from its start would otherwise time its compiling. Their seconds are the
    summary's ``compile_seconds``, never part of ``seconds``.
    """
    impl = get_backend(backend)
    optimizer = get_optimizer(optimizer)
    state = optimizer.new_state(net.layout.size, net.dtype) if optimizer.state_names else None
    n = X.shape[0]
    labels, labels_val = Y.argmax(axis=1), Y_val.argmax(axis=1)
    steps_per_epoch, cuts = _segments(n, batch_size, evals_per_epoch)
    compile_seconds = sum(impl.prepare(net, b, Y, X, optimizer=optimizer)
                          for b in _segment_batch_sizes(n, batch_size, cuts))
    noise_X, noise_Y = X[:NOISE_ROWS], Y[:NOISE_ROWS]
    # The training loss and accuracy are estimated on a fixed subset, so evaluation stays cheap next to training.
    X_eval, Y_eval, labels_eval = X[:TRAIN_EVAL_ROWS], Y[:TRAIN_EVAL_ROWS], labels[:TRAIN_EVAL_ROWS]

    def evaluate(epoch, steps, seconds, noise):
        point = {"epoch": epoch, "steps": steps, "seconds": seconds}
        point["train_loss"], point["train_accuracy"] = training.evaluate(net, X_eval, Y_eval, labels_eval, lmbda, n)[:2]
        point["val_loss"], point["val_accuracy"] = training.evaluate(net, X_val, Y_val, labels_val, lmbda, n)[:2]
        if on_eval is not None:
            on_eval(dict(point))
        if noise:
            noise_at(point)
        return point

    def noise_at(point):
        point["noise"] = True
        if on_noise is not None:
            on_noise(point, gradient_noise_scale(net, noise_X, noise_Y, lmbda=lmbda, n=n))

    point = evaluate(0.0, 0, 0.0, 0 in noise_epochs)
    best = point["val_accuracy"]
    steps, seconds, status, reached = 0, 0.0, "not reached", None
    if best >= target:
        status, reached = "reached", point
    epoch = 0
    while reached is None and epoch < max_epochs and status != "diverged":
        epoch += 1
        order = net.rng.permutation(n)
        for first, last in zip(cuts[:-1], cuts[1:]):
            rows = order[first * batch_size:last * batch_size]
            start = time.perf_counter()
            bad = impl.optimizer_epoch(net, X, Y, rows, batch_size, eta, lmbda, n, optimizer, state)
            seconds += time.perf_counter() - start
            if bad >= 0:
                status = "diverged"
                steps += bad + 1
                break
            steps += last - first
            end_of_epoch = last == steps_per_epoch
            point = evaluate(epoch - 1 + last / steps_per_epoch, steps, seconds,
                             end_of_epoch and (epoch in noise_epochs))
            best = max(best, point["val_accuracy"])
            if point["val_accuracy"] >= target:
                status, reached = "reached", point
                break
    if noise_epochs and status != "diverged" and "noise" not in point:
        noise_at(point)
    summary = {
        "status": status, "reached": reached is not None, "epochs_run": epoch, "seconds": seconds,
        "compile_seconds": compile_seconds,
        "best_val_accuracy": best, "final_train_loss": point["train_loss"], "final_val_loss": point["val_loss"],
    }
    if reached is not None:
        summary.update(epochs_to_target=reached["epoch"], steps_to_target=reached["steps"],
                       seconds_to_target=reached["seconds"], examples_to_target=reached["steps"] * batch_size)
    return summary


def _noise_epochs(max_epochs):
    epochs, e = {0}, 1
    while e <= max_epochs:
        epochs.add(e)
        e *= 2
    return epochs


ORPHANED = 3  # exit status of a worker that found its parent gone


def _exit_if_orphaned(parent_pid):
    """End this worker process at once when the process that started it is gone (killed with ``kill -9``).

    A killed parent closes nothing a busy worker would notice before its run
    ends, which may be minutes; every evaluation point calls this instead.
    """
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(ORPHANED)


def run_trial(X, Y, X_val, Y_val, *, sizes, cost, init, dtype, batch_size, eta, seed, lmbda, target,
              max_epochs, evals_per_epoch, backend, with_noise, optimizer=None, threads=1, parent_pid=None,
              emit=None) -> list[dict]:
    """One sweep run from seed ``seed``'s initialization, as the rows it yields (for a worker process).

    Returns the ``curve`` and ``noise`` points in the order measured, then the
    ``sweep`` summary, each a dict with its ``kind``; the parent adds the
    common columns and writes them. Pure: the same arguments give the same
    rows (up to the seconds), wherever it runs.

    ``optimizer``: an :meth:`mbtrain.optim.Optimizer.describe` dict (plain
    data, for any worker), a name or an Optimizer; None is SGD. ``threads``:
    None leaves the thread counts in force. ``emit``: called with each row as
    it is measured instead of collecting them (a serial run writes them at
    once, so Ctrl-C keeps them); then the list returned is empty.

    ``parent_pid``: the pid of the process this worker was started by (a
    joblib worker's); when that process is gone, the worker exits at its next
    evaluation point rather than finish a run nobody will record.
    """
    rows = []
    emit = rows.append if emit is None else emit
    if isinstance(optimizer, dict):
        optimizer = from_description(optimizer)

    def on_eval(point):
        _exit_if_orphaned(parent_pid)
        emit(dict(kind="curve", **point))

    _exit_if_orphaned(parent_pid)
    with contextlib.nullcontext() if threads is None else thread_limits(threads):
        net = Network(sizes, cost=cost, init=init, dtype=dtype, seed=seed)
        summary = train_to_target(
            net, X, Y, X_val, Y_val, batch_size=batch_size, eta=eta, lmbda=lmbda, target=target,
            max_epochs=max_epochs, evals_per_epoch=evals_per_epoch, backend=backend, on_eval=on_eval,
            on_noise=lambda point, estimate: emit(dict(
                kind="noise", epoch=point["epoch"], steps=point["steps"], val_accuracy=point["val_accuracy"],
                **estimate)),
            noise_epochs=_noise_epochs(max_epochs) if with_noise else (), optimizer=optimizer or "sgd")
    emit(dict(kind="sweep", status=summary.pop("status"), epoch=summary.pop("epochs_run"), **summary))
    return rows


def _keyed_trial(key, kwargs, arrays):
    """``(key, rows)`` of one run in a worker; ``arrays`` ``(X, Y, X_val, Y_val)``, which the executors send once."""
    return key, run_trial(*arrays, **kwargs)
