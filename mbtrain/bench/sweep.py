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

import contextlib
import math
import os
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm  # the text bar: tqdm.auto wants ipywidgets in notebooks

from .. import training
from ..backends import get_backend
from ..network import Network
from .data import fingerprint
from .machine import available_cores, check_resumable, machine_info, thread_limits, write_machine
from .noise import gradient_noise_scale
from .results import ResultsWriter, folder_lock
from .throughput import RunResult, finish_run

ETA_POLICIES = ("fixed", "linear", "sqrt", "grid")
DEFAULT_BATCH_SIZES = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
DEFAULT_GRID_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)
TRAIN_EVAL_ROWS = 10_000  # training loss/accuracy of the curves: on the first rows (the data is already shuffled)
NOISE_ROWS = 4096  # per-example gradients in each noise-scale estimate
SCHEDULER_TIMEOUT = 30  # seconds to reach a Dask scheduler before giving up


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


ORPHANED = 3  # exit status of a worker that found its parent gone


def _exit_if_orphaned(parent_pid):
    """End this worker process at once when the process that started it is gone (killed with ``kill -9``).

    A killed parent closes nothing a busy worker would notice before its run
    ends, which may be minutes; every evaluation point calls this instead.
    """
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(ORPHANED)


def run_trial(X, Y, X_val, Y_val, *, sizes, cost, init, dtype, batch_size, eta, seed, lmbda, target,
              max_epochs, evals_per_epoch, backend, with_noise, threads=1, parent_pid=None) -> list[dict]:
    """One sweep run from seed ``seed``'s initialization, as the rows it yields (for a worker process).

    Returns the ``curve`` and ``noise`` points in the order measured, then the
    ``sweep`` summary, each a dict with its ``kind``; the parent adds the
    common columns and writes them. Pure: the same arguments give the same
    rows (up to the seconds), wherever it runs.

    ``parent_pid``: the pid of the process this worker was started by (a
    joblib worker's); when that process is gone, the worker exits at its next
    evaluation point rather than finish a run nobody will record.
    """
    rows = []

    def on_eval(point):
        _exit_if_orphaned(parent_pid)
        rows.append(dict(kind="curve", **point))

    _exit_if_orphaned(parent_pid)
    with thread_limits(threads):
        net = Network(sizes, cost=cost, init=init, dtype=dtype, seed=seed)
        summary = train_to_target(
            net, X, Y, X_val, Y_val, batch_size=batch_size, eta=eta, lmbda=lmbda, target=target,
            max_epochs=max_epochs, evals_per_epoch=evals_per_epoch, backend=backend, on_eval=on_eval,
            on_noise=lambda point, estimate: rows.append(dict(
                kind="noise", epoch=point["epoch"], steps=point["steps"], val_accuracy=point["val_accuracy"],
                **estimate)),
            noise_epochs=_noise_epochs(max_epochs) if with_noise else ())
    rows.append(dict(kind="sweep", status=summary.pop("status"), epoch=summary.pop("epochs_run"), **summary))
    return rows


def _run_key(batch_size, eta, seed):
    return int(batch_size), float(eta), int(seed)


def _finished_runs(rows) -> set:
    """Keys ``(batch_size, eta, seed)`` of the runs whose ``sweep`` row is on disk."""
    return {_run_key(r["batch_size"], r["eta"], r["seed"]) for r in rows if r.get("kind") == "sweep"}


def _keep_finished(rows):
    """Existing rows minus the curve and noise points of runs that did not finish (they run again)."""
    done = _finished_runs(rows)
    return [r for r in rows if r.get("kind") not in ("curve", "noise")
            or _run_key(r["batch_size"], r["eta"], r["seed"]) in done]


@contextlib.contextmanager
def _executor(jobs, scheduler):
    """Where the parallel runs go: yields ``run(tasks)``, which yields ``(key, rows)`` as each run finishes.

    ``tasks`` are ``(key, run_trial keyword arguments)``. Entered before
    anything is written, so a missing package or an unreachable scheduler
    fails while the result folder is still as it was. ``scheduler``: a
    ``dask.distributed`` scheduler address (``tcp://host:8786``); the trials
    then run on its workers through joblib's Dask backend, and a trial lost
    with a worker is run again by Dask. Otherwise loky worker processes of
    this one, which exit when this process is killed.
    """
    try:
        import joblib
    except ImportError:
        raise ValueError("jobs: parallel sweeps need joblib (pip install 'mbtrain[parallel]')") from None

    def run(tasks):
        parent_pid = os.getpid() if scheduler is None else None  # Dask workers belong to their cluster
        calls = [joblib.delayed(_keyed_trial)(key, dict(kwargs, parent_pid=parent_pid)) for key, kwargs in tasks]
        return joblib.Parallel(n_jobs=jobs, return_as="generator_unordered")(calls)

    if scheduler is None:
        yield run
        return
    try:
        from dask.distributed import Client
    except ImportError:
        raise ValueError("scheduler: Dask sweeps need dask.distributed (pip install 'mbtrain[parallel]')") from None
    try:
        client = Client(scheduler, timeout=SCHEDULER_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        raise ValueError(f"scheduler: cannot reach the Dask scheduler at {scheduler} ({exc})") from None
    with client, joblib.parallel_config(backend="dask"):
        yield run


def _keyed_trial(key, kwargs):
    return key, run_trial(**kwargs)


def sweep(data, sizes, *, out, cost="quadratic", init="gaussian", dtype="float32",
          batch_sizes=DEFAULT_BATCH_SIZES, target=0.85, max_epochs=30, eta=3.0, eta_policy="fixed",
          ref_batch_size=10, grid_factors=DEFAULT_GRID_FACTORS, lmbda=0.0, seeds=3, evals_per_epoch=4,
          backend="numba", threads=1, quick=False, command=None, on_row=None, progress=None,
          write_report=True, resume=False, jobs=1, scheduler=None) -> RunResult:
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
        As in :func:`mbtrain.bench.throughput.bench` (threads default to 1;
        with ``jobs`` they are per trial).
    resume : bool
        Continue the run in ``out`` (same settings, checked against its
        machine.json): runs whose ``sweep`` row is in results.csv are not run
        again; the curve points of a run cut short are dropped and the run is
        redone; a last line cut short by a kill is dropped. Without ``resume``
        an existing results.csv is replaced.
    jobs : int
        Runs at once. 1 (default): serially in this process, rows written as
        measured. More: joblib worker processes (``-1``: one per core); each
        run's rows are written, by this process only, when it finishes.
        ``seconds_to_target`` is then wall time shared with the other runs:
        the ``executor`` and ``jobs`` columns say so.
    scheduler : str or None
        Address of a ``dask.distributed`` scheduler (``tcp://host:8786``): the
        runs go to its workers through joblib's Dask backend (``jobs`` caps
        how many at once; -1: as many as the cluster takes). Runs lost with a
        worker are run again by Dask; a run is written once, whichever copy
        finishes first.

    Returns
    -------
    RunResult (``interrupted`` after Ctrl-C; what was measured is kept and reported).
    """

    # Everything is checked before the folder is touched: a bad setting must not cost an earlier run's results.
    if eta_policy not in ETA_POLICIES:
        raise ValueError(f"eta_policy: unknown policy {eta_policy!r}; choose one of {list(ETA_POLICIES)}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs == 0 or jobs < -1:
        raise ValueError(f"jobs: must be a positive number of parallel runs or -1 (one per core), got {jobs!r}")
    get_backend(backend)
    out = Path(out)
    threads = threads or available_cores()
    sizes = [int(s) for s in sizes]
    probe = Network(sizes, cost=cost, init=init, dtype=dtype, seed=0)
    if data.n_features != sizes[0] or data.n_classes > sizes[-1]:
        raise ValueError(f"sizes: {sizes} do not fit {data.name} ({data.n_features} features, "
                         f"{data.n_classes} classes)")
    X = np.ascontiguousarray(data.X_train, dtype=probe.dtype)
    X_val = np.ascontiguousarray(data.X_val, dtype=probe.dtype)
    eye = np.eye(sizes[-1], dtype=probe.dtype)
    Y, Y_val = eye[data.y_train], eye[data.y_val]
    n = X.shape[0]
    batch_sizes = [int(min(b, n)) for b in batch_sizes]
    noise_batch = min(batch_sizes, key=lambda b: (abs(math.log(b / ref_batch_size)), b))
    parallel = scheduler is not None or jobs != 1
    executor = "dask" if scheduler is not None else "joblib-loky" if parallel else "serial"
    common = dict(dataset=data.name, sizes=",".join(map(str, sizes)), cost=probe.cost.name, dtype=probe.dtype.name,
                  arm=backend, eta_policy=eta_policy, lmbda=lmbda, threads=threads, rows=n, target=target,
                  max_epochs=max_epochs, executor=executor, jobs=jobs)
    # Every setting that changes a result; a resumed run must match each (how runs are spread may differ).
    rows_fingerprint = fingerprint(data.X_train, data.y_train, data.X_val, data.y_val)
    settings = dict(dataset=data.name, data_fingerprint=rows_fingerprint, sizes=sizes, cost=probe.cost.name,
                    init=init, dtype=probe.dtype.name, batch_sizes=batch_sizes, target=target,
                    max_epochs=max_epochs, eta=eta, eta_policy=eta_policy, ref_batch_size=ref_batch_size,
                    grid_factors=list(grid_factors), lmbda=lmbda, seeds=seeds,
                    evals_per_epoch=evals_per_epoch, backend=backend, noise_batch_size=noise_batch,
                    train_rows=n, validation_rows=int(X_val.shape[0]), threads=threads)
    runs = [(b, e, s) for b in batch_sizes for e in etas_for(b, eta, eta_policy, ref_batch_size, grid_factors)
            for s in range(seeds)]
    noise_eta = {b: etas_for(b, eta, eta_policy, ref_batch_size, grid_factors)[
        len(grid_factors) // 2 if eta_policy == "grid" else 0] for b in batch_sizes}
    trial_settings = dict(sizes=sizes, cost=cost, init=init, dtype=dtype, lmbda=lmbda, target=target,
                          max_epochs=max_epochs, evals_per_epoch=evals_per_epoch, backend=backend, threads=threads)
    interrupted = False
    out.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as held:
        held.enter_context(folder_lock(out))
        previous = check_resumable(out, "sweep", settings) if resume else {}
        info = machine_info(command=command)
        info.update(run="sweep", dataset=data.name, dataset_note=data.note, quick=quick, settings=settings,
                    execution=dict(executor=executor, jobs=jobs, scheduler=scheduler))
        if previous:
            info["resumed_from"] = previous.get("resumed_from", []) + [
                {k: previous.get(k) for k in ("timestamp", "command", "execution", "interrupted")}]
        # The workers are reachable before results.csv is opened (and, without resume, emptied).
        run_parallel = held.enter_context(_executor(jobs, scheduler)) if parallel else None
        writer = ResultsWriter(out / "results.csv", on_row=on_row, resume=resume, keep=_keep_finished)

        def record(batch_size, run_eta, seed, rows):
            run = dict(common, batch_size=batch_size, eta=run_eta, seed=seed)
            for row in rows:
                writer.write(**run, **row)

        try:
            done = _finished_runs(writer.rows)
            todo = [run for run in runs if _run_key(*run) not in done]
            with thread_limits(threads) as counts:
                info["threads"] = counts
                # in parallel runs too: the workers then load the kernels from the cache
                info["compile_seconds"] = get_backend(backend).compile(probe.dtype.name, probe.cost)
                write_machine(out / "machine.json", info)
                with tqdm(total=len(runs), initial=len(runs) - len(todo), desc="sweep", unit="run",
                          disable=None if progress is None else not progress) as bar:
                    with_noise = {(b, e, s): b == noise_batch and s == 0 and e == noise_eta[b] for b, e, s in todo}
                    if run_parallel is None:
                        for batch_size, run_eta, seed in todo:
                            bar.set_postfix(batch_size=batch_size, eta=f"{run_eta:.3g}", seed=seed)
                            _serial_run(record, X, Y, X_val, Y_val, batch_size, run_eta, seed,
                                        with_noise[batch_size, run_eta, seed], trial_settings)
                            bar.update(1)
                    else:
                        tasks = [(_run_key(*run), dict(X=X, Y=Y, X_val=X_val, Y_val=Y_val, batch_size=run[0],
                                                       eta=run[1], seed=run[2], with_noise=with_noise[run],
                                                       **trial_settings)) for run in todo]
                        for key, rows in run_parallel(tasks):
                            if key in done:  # a run Dask ran twice (a worker was lost): written once
                                continue
                            record(*key, rows)
                            done.add(key)
                            bar.update(1)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            writer.close()
        return finish_run(out, info, interrupted, write_report)


def _serial_run(record, X, Y, X_val, Y_val, batch_size, run_eta, seed, with_noise, settings):
    """One run in this process, its rows written as they are measured (so Ctrl-C keeps them)."""
    settings = dict(settings)
    settings.pop("threads")  # already in force
    net = Network(settings["sizes"], cost=settings["cost"], init=settings["init"], dtype=settings["dtype"],
                  seed=seed)
    summary = train_to_target(
        net, X, Y, X_val, Y_val, batch_size=batch_size, eta=run_eta, lmbda=settings["lmbda"],
        target=settings["target"], max_epochs=settings["max_epochs"], evals_per_epoch=settings["evals_per_epoch"],
        backend=settings["backend"],
        on_eval=lambda point: record(batch_size, run_eta, seed, [dict(kind="curve", **point)]),
        on_noise=lambda point, estimate: record(batch_size, run_eta, seed, [dict(
            kind="noise", epoch=point["epoch"], steps=point["steps"], val_accuracy=point["val_accuracy"],
            **estimate)]),
        noise_epochs=_noise_epochs(settings["max_epochs"]) if with_noise else ())
    record(batch_size, run_eta, seed,
           [dict(kind="sweep", status=summary.pop("status"), epoch=summary.pop("epochs_run"), **summary)])
