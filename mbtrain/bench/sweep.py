"""``sweep``: time to a target validation accuracy across batch sizes.

For each batch size, each eta its policy gives and each seed, train from the
seed's initialization (the same for every batch size) until the validation
accuracy reaches ``target`` or ``max_epochs`` pass. Accuracy is evaluated
``evals_per_epoch`` times per epoch, at mini-batch boundaries, so
``steps_to_target`` resolves a quarter epoch by default; only SGD time counts
in ``seconds_to_target`` (evaluation is excluded).

eta policies (``b`` the batch size, ``b_ref`` the reference batch size)::

    fixed   eta
    linear  eta * b / b_ref           (Goyal et al. 2017)
    sqrt    eta * sqrt(b / b_ref)
    grid    eta * sqrt(b / b_ref) * f for each f in eta_grid_factors; the report
            picks the best eta per batch size and shows the band that reached the target

The gradient noise scale (:mod:`mbtrain.bench.noise`) is estimated along the
first seed's run at the batch size nearest ``b_ref``, at epochs 0, 1, 2, 4, ...
and where the run stops.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from ..backends import get_backend
from ..backends.numpy_matrix import forward
from ..network import Network
from .machine import available_cores, machine_info, thread_limits, write_machine
from .noise import gradient_noise_scale
from .results import ResultsWriter, read_results
from .throughput import RunResult

ETA_POLICIES = ("fixed", "linear", "sqrt", "grid")
DEFAULT_BATCH_SIZES = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
DEFAULT_GRID_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)
TRAIN_EVAL_ROWS = 10_000  # training loss/accuracy of the curves: on the first rows (the data is already shuffled)
NOISE_ROWS = 4096  # per-example gradients in each noise-scale estimate


def etas_for(batch_size, eta, policy="fixed", ref_batch_size=10, grid_factors=DEFAULT_GRID_FACTORS) -> list[float]:
    """The learning rates ``policy`` tries at ``batch_size`` (one, or several for ``"grid"``)."""
    if policy == "fixed":
        return [float(eta)]
    if policy == "linear":
        return [float(eta) * batch_size / ref_batch_size]
    scaled = float(eta) * math.sqrt(batch_size / ref_batch_size)
    if policy == "sqrt":
        return [scaled]
    if policy == "grid":
        return [scaled * f for f in grid_factors]
    raise ValueError(f"eta_policy: unknown policy {policy!r}; choose one of {list(ETA_POLICIES)}")


def loss_and_accuracy(net, X, Y, labels, lmbda, n):
    """``net.loss(X, Y, lmbda, n)`` and ``net.score(X, labels)`` from one forward pass."""
    zs, activations = forward(net.weights, net.biases, net.cost, X)
    cost = float(np.mean(net.cost.fn(zs[-1], activations[-1], Y), dtype=np.float64))
    if lmbda:
        cost += lmbda / (2 * n) * sum(float(np.sum(np.square(w, dtype=np.float64))) for w in net.weights)
    return cost, float(np.mean(activations[-1].argmax(axis=1) == labels))


def _segments(n, batch_size, evals_per_epoch):
    """Mini-batch indices where an epoch is split for evaluation: ``[0, ..., steps_per_epoch]``."""
    steps = math.ceil(n / batch_size)
    cuts = sorted({round(k * steps / evals_per_epoch) for k in range(evals_per_epoch + 1)})
    return steps, cuts


def train_to_target(net, X, Y, X_val, Y_val, *, batch_size, eta, lmbda=0.0, target=0.85, max_epochs=30,
                    evals_per_epoch=4, backend="numba", on_eval=None, on_noise=None, noise_epochs=()) -> dict:
    """Train ``net`` in place until validation accuracy ``>= target`` or ``max_epochs``; return the summary.

    ``X``, ``Y`` (one-hot) and the validation arrays are already in the
    network's dtype. The shuffle order comes from ``net.rng``, as in
    :meth:`Network.fit`. ``on_eval(point)`` receives each evaluation (a dict with
    ``epoch`` (fractional), ``steps``, ``seconds``, losses and accuracies, and the
    ``on_noise(point, estimate)`` receives the gradient noise scale (see
    :func:`mbtrain.bench.noise.gradient_noise_scale`, on up to ``NOISE_ROWS``
    training rows) at the epochs in ``noise_epochs`` and where the run stops.
    """
    impl = get_backend(backend)
    n = X.shape[0]
    labels, labels_val = Y.argmax(axis=1), Y_val.argmax(axis=1)
    steps_per_epoch, cuts = _segments(n, batch_size, evals_per_epoch)
    noise_X, noise_Y = X[:NOISE_ROWS], Y[:NOISE_ROWS]
    # The training loss and accuracy are estimated on a fixed subset, so evaluation stays cheap next to training.
    X_eval, Y_eval, labels_eval = X[:TRAIN_EVAL_ROWS], Y[:TRAIN_EVAL_ROWS], labels[:TRAIN_EVAL_ROWS]

    def evaluate(epoch, steps, seconds, noise):
        point = {"epoch": epoch, "steps": steps, "seconds": seconds}
        point["train_loss"], point["train_accuracy"] = loss_and_accuracy(net, X_eval, Y_eval, labels_eval, lmbda, n)
        point["val_loss"], point["val_accuracy"] = loss_and_accuracy(net, X_val, Y_val, labels_val, lmbda, n)
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
            bad = impl.sgd_epoch(net, X, Y, rows, batch_size, eta, lmbda, n)
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


def sweep(data, sizes, *, out, cost="quadratic", init="gaussian", dtype="float32",
          batch_sizes=DEFAULT_BATCH_SIZES, target=0.85, max_epochs=30, eta=3.0, eta_policy="fixed",
          ref_batch_size=10, grid_factors=DEFAULT_GRID_FACTORS, lmbda=0.0, seeds=3, evals_per_epoch=4,
          backend="numba", threads=1, quick=False, command=None, on_row=None, progress=None,
          write_report=True) -> RunResult:
    """Train to ``target`` validation accuracy for every batch size, eta and seed; write the results.

    Parameters
    ----------
    data : mbtrain.bench.data.BenchData
        Training and validation rows (the test rows are never used).
    sizes : list of int
    out : str or Path
        The result folder (results.csv, machine.json, report.md and plots).
    seeds : int
        Seeds ``0 .. seeds-1``; seed ``s`` fixes the initial weights (the same
        for every batch size) and the shuffle order.
    threads, on_row, progress
        As in :func:`mbtrain.bench.throughput.bench` (threads default to 1).

    Returns
    -------
    RunResult (``interrupted`` after Ctrl-C; what was measured is kept and reported).
    """
    from tqdm import tqdm  # the text bar: tqdm.auto wants ipywidgets in notebooks

    from ..backends.numba_matrix import compile_kernels

    if eta_policy not in ETA_POLICIES:
        raise ValueError(f"eta_policy: unknown policy {eta_policy!r}; choose one of {list(ETA_POLICIES)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    threads = threads or available_cores()
    sizes = [int(s) for s in sizes]
    probe = Network(sizes, cost=cost, dtype=dtype, seed=0)
    X = np.ascontiguousarray(data.X_train, dtype=probe.dtype)
    X_val = np.ascontiguousarray(data.X_val, dtype=probe.dtype)
    eye = np.eye(sizes[-1], dtype=probe.dtype)
    Y, Y_val = eye[data.y_train], eye[data.y_val]
    n = X.shape[0]
    batch_sizes = [int(min(b, n)) for b in batch_sizes]
    noise_batch = min(batch_sizes, key=lambda b: (abs(math.log(b / ref_batch_size)), b))
    common = dict(dataset=data.name, sizes=",".join(map(str, sizes)), cost=probe.cost.name, dtype=probe.dtype.name,
                  arm=backend, eta_policy=eta_policy, lmbda=lmbda, threads=threads, rows=n, target=target,
                  max_epochs=max_epochs)
    info = machine_info(command=command)
    info.update(run="sweep", dataset=data.name, dataset_note=data.note, quick=quick,
                settings=dict(sizes=sizes, cost=probe.cost.name, init=init, dtype=probe.dtype.name,
                              batch_sizes=batch_sizes, target=target, max_epochs=max_epochs, eta=eta,
                              eta_policy=eta_policy, ref_batch_size=ref_batch_size,
                              grid_factors=list(grid_factors), lmbda=lmbda, seeds=seeds,
                              evals_per_epoch=evals_per_epoch, backend=backend, noise_batch_size=noise_batch,
                              train_rows=n, validation_rows=int(X_val.shape[0])))
    runs = [(b, e, s) for b in batch_sizes for e in etas_for(b, eta, eta_policy, ref_batch_size, grid_factors)
            for s in range(seeds)]
    writer = ResultsWriter(out / "results.csv", on_row=on_row)
    interrupted = False
    try:
        with thread_limits(threads) as counts:
            info["threads"] = counts
            if backend == "numba":
                info["compile_seconds"] = compile_kernels(probe.dtype.name, probe.cost.name)
            write_machine(out / "machine.json", info)
            bar = tqdm(runs, desc="sweep", unit="run", disable=None if progress is None else not progress)
            try:
                for batch_size, run_eta, seed in bar:
                    bar.set_postfix(batch_size=batch_size, eta=f"{run_eta:.3g}", seed=seed)
                    row = dict(common, batch_size=batch_size, eta=run_eta, seed=seed)
                    net = Network(sizes, cost=cost, init=init, dtype=dtype, seed=seed)
                    with_noise = batch_size == noise_batch and seed == 0 and run_eta == etas_for(
                        batch_size, eta, eta_policy, ref_batch_size, grid_factors)[len(grid_factors) // 2
                                                                                   if eta_policy == "grid" else 0]

                    def on_eval(point, row=row):
                        writer.write(kind="curve", **row, **point)

                    def on_noise(point, estimate, row=row):
                        writer.write(kind="noise", **row, epoch=point["epoch"], steps=point["steps"],
                                     val_accuracy=point["val_accuracy"], **estimate)

                    summary = train_to_target(
                        net, X, Y, X_val, Y_val, batch_size=batch_size, eta=run_eta, lmbda=lmbda, target=target,
                        max_epochs=max_epochs, evals_per_epoch=evals_per_epoch, backend=backend, on_eval=on_eval,
                        on_noise=on_noise, noise_epochs=_noise_epochs(max_epochs) if with_noise else ())
                    writer.write(kind="sweep", **row, status=summary.pop("status"), epoch=summary.pop("epochs_run"),
                                 **summary)
            finally:
                bar.close()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        writer.close()
    info["interrupted"] = interrupted
    write_machine(out / "machine.json", info)
    if write_report:
        from .report import write_report as _write_report

        _write_report(out)
    return RunResult(out, read_results(out), interrupted)
