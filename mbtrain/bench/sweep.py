"""``sweep``: time to a target validation accuracy across batch sizes (and optimizers).

For each optimizer, each batch size, each eta its policy gives and each seed,
train from the seed's initialization (the same for every batch size and
optimizer) until the validation accuracy reaches ``target`` or ``max_epochs``
pass (one run: :mod:`mbtrain.bench.trial`). Accuracy is evaluated
``evals_per_epoch`` times per epoch, at mini-batch boundaries, so
``steps_to_target`` resolves a quarter epoch by default; only training time
counts in ``seconds_to_target`` (evaluation is excluded).

eta policies (``b`` the batch size, ``b_ref`` the reference batch size; ``eta``
each optimizer's own reference learning rate, since SGD's and Adam's differ by
orders of magnitude)::

    fixed   eta
    linear  eta * b / b_ref           (Goyal et al. 2017)
    sqrt    eta * sqrt(b / b_ref)
    grid    eta * sqrt(b / b_ref) * f for each f in eta_grid_factors; the report
            picks the best eta per batch size and shows the band that reached the target

The gradient noise scale (:mod:`mbtrain.bench.noise`) is estimated along the
first seed's run of the first optimizer at the batch size nearest ``b_ref``,
at epochs 0, 1, 2, 4, ... and where the run stops.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import math
import numbers
import os
from collections.abc import Sequence
import warnings
from pathlib import Path

import numpy as np
from tqdm import tqdm  # the text bar: tqdm.auto wants ipywidgets in notebooks

from ..backends import get_backend
from ..network import Network
from ..optim import get_optimizer, label
from .data import fingerprint
from .machine import available_cores, check_resumable, machine_info, thread_limits, write_machine
from .results import ResultsWriter, folder_lock
from .throughput import RunResult, finish_run
from .trial import NOISE_ROWS, TRAIN_EVAL_ROWS, _keyed_trial, run_trial, train_to_target  # noqa: F401 (re-exported)

ETA_POLICIES = ("fixed", "linear", "sqrt", "grid")
DEFAULT_BATCH_SIZES = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
DEFAULT_GRID_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)
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


def _run_key(optimizer, batch_size, eta, seed):
    return str(optimizer), int(batch_size), float(eta), int(seed)


def _finished_runs(rows) -> set:
    """Keys ``(optimizer, batch_size, eta, seed)`` of the runs whose ``sweep`` row is on disk."""
    return {_run_key(r["optimizer"], r["batch_size"], r["eta"], r["seed"]) for r in rows if r.get("kind") == "sweep"}


def _keep_finished(rows):
    """Existing rows minus the curve and noise points of runs that did not finish (they run again)."""
    done = _finished_runs(rows)
    return [r for r in rows if r.get("kind") not in ("curve", "noise")
            or _run_key(r["optimizer"], r["batch_size"], r["eta"], r["seed"]) in done]


def optimizers_and_etas(optimizers, eta) -> list:
    """``[(optimizer, reference eta), ...]``: each optimizer with its own eta; refuses what does not pair up.

    ``eta`` is one number per optimizer, in the same order (a single number
    only with a single optimizer: SGD's and Adam's learning rates differ by
    orders of magnitude, so one shared value would be wrong for some of them).
    """
    if isinstance(optimizers, str) or not isinstance(optimizers, Sequence):
        optimizers = [optimizers]
    chosen = [get_optimizer(o) for o in optimizers]
    if not chosen:
        raise ValueError("optimizers: give at least one optimizer, e.g. ['sgd']")
    labels = [label(o.describe()) for o in chosen]
    twice = sorted({name for name in labels if labels.count(name) > 1})
    if twice:
        raise ValueError(f"optimizers: {', '.join(twice)} given more than once")
    etas = [eta] if isinstance(eta, numbers.Real) else list(eta)
    if len(etas) != len(chosen):
        names = ", ".join(o.name for o in chosen)
        raise ValueError(f"eta: {len(etas)} learning rate{'s' if len(etas) != 1 else ''} for {len(chosen)} "
                         f"optimizers ({names}); give one per optimizer, in the same order (e.g. 3.0,0.001 for "
                         "sgd,adam): their learning rates differ by orders of magnitude")
    for value in etas:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (math.isfinite(value) and value > 0):
            raise ValueError(f"eta: every learning rate must be a finite number > 0, got {value!r}")
    return list(zip(chosen, [float(e) for e in etas]))


def _as_they_finish(submit, as_completed, lost, tasks, at_once):
    """Yield each Dask task's result as it finishes, with at most ``at_once`` of ``tasks`` submitted at a time.

    ``lost``: the exception Dask raises for a task it gave up on after its
    workers died (``KilledWorker``); it, or a task cancelled (the scheduler
    gone), becomes a ValueError naming the run.
    """
    pending, keys = iter(tasks), {}

    def start(key, kwargs):
        future = submit(key, kwargs)
        keys[future] = key
        return future

    finished = as_completed([start(*task) for task in itertools.islice(pending, at_once)])
    for future in finished:
        try:
            result = future.result()
        except (lost, concurrent.futures.CancelledError) as exc:
            optimizer, batch_size, eta, seed = keys[future]
            why = "the workers that ran it died" if isinstance(exc, lost) else f"it was cancelled ({exc})"
            raise ValueError(f"scheduler: Dask gave up on the run at batch size {batch_size}, eta {eta:g}, seed "
                             f"{seed} ({optimizer}): {why}; the runs that finished are in results.csv: continue "
                             "with --resume") from None
        for task in itertools.islice(pending, 1):
            finished.add(start(*task))
        yield result


@contextlib.contextmanager
def _executor(jobs, scheduler, arrays):
    """Where the parallel runs go: yields ``(run(tasks), facts)``; ``run`` yields ``(key, rows)`` as each run finishes.

    ``tasks`` are ``(key, run_trial keyword arguments)`` without the data,
    ``arrays`` ``(X, Y, X_val, Y_val)``, sent to the workers once. Entered
    before anything is written, so a missing package or an unreachable
    scheduler fails while the result folder is still as it was. ``scheduler``:
    a ``dask.distributed`` scheduler address (``tcp://host:8786``); the trials
    then run on its workers, at most ``jobs`` at once (None or -1: as many as
    the cluster takes), and a trial lost with a worker is run again by Dask.
    Otherwise ``jobs`` loky worker processes of this one (joblib), which exit
    when this process is killed. ``facts``: how many ``workers`` there were
    at the start (and Dask's worker ``threads``) and the ``runs_at_once``.
    """
    if scheduler is None:
        try:
            import joblib
        except ImportError:
            raise ValueError("jobs: parallel sweeps need joblib (pip install 'mbtrain[parallel]')") from None
        n_jobs = joblib.effective_n_jobs(jobs)  # what joblib will use: -1 counts this machine's cores

        def run(tasks):
            # the orphan check only where the runs go to processes of this one (joblib runs n_jobs=1 here)
            parent_pid = os.getpid() if n_jobs > 1 else None
            calls = [joblib.delayed(_keyed_trial)(key, dict(kwargs, parent_pid=parent_pid), arrays)
                     for key, kwargs in tasks]
            return joblib.Parallel(n_jobs=n_jobs, return_as="generator_unordered")(calls)

        yield run, dict(workers=n_jobs, runs_at_once=n_jobs)
        return
    try:
        from dask import distributed
    except ImportError:
        raise ValueError("scheduler: Dask sweeps need dask.distributed (pip install 'mbtrain[parallel]')") from None
    try:
        client = distributed.Client(scheduler, timeout=SCHEDULER_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        raise ValueError(f"scheduler: cannot reach the Dask scheduler at {scheduler} ({exc})") from None
    with client:
        try:
            client.wait_for_workers(1, timeout=SCHEDULER_TIMEOUT)
        except (OSError, TimeoutError):
            raise ValueError(f"scheduler: no Dask worker joined the scheduler at {scheduler} within "
                             f"{SCHEDULER_TIMEOUT} s") from None
        threads = client.nthreads()  # {worker address: threads}: what the cluster has now
        total = sum(threads.values())
        limit = None if jobs in (None, -1) else jobs
        # The data goes once, as a task of its own rather than scattered: Dask can run it again when every
        # worker that held it has died, and the trials waiting for it then still run.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sending large graph")  # sent once, as it must be
            shared = client.submit(tuple, arrays, pure=False)

        def submit(key, kwargs):
            return client.submit(_keyed_trial, key, kwargs, shared, pure=False)

        def run(tasks):
            return _as_they_finish(submit, distributed.as_completed, distributed.KilledWorker, tasks,
                                   limit or len(tasks))

        yield run, dict(workers=len(threads), threads=total, runs_at_once=min(limit or total, total))


def sweep(data, sizes, *, out, cost="quadratic", init="gaussian", dtype="float32",
          batch_sizes=DEFAULT_BATCH_SIZES, target=0.85, max_epochs=30, eta=3.0, eta_policy="fixed",
          ref_batch_size=10, grid_factors=DEFAULT_GRID_FACTORS, lmbda=0.0, seeds=3, evals_per_epoch=4,
          backend="numba", threads=1, quick=False, command=None, on_row=None, progress=None,
          write_report=True, resume=False, jobs=None, scheduler=None, optimizers=("sgd",)) -> RunResult:
    """Train to ``target`` validation accuracy for every optimizer, batch size, eta and seed; write the results.

    Parameters
    ----------
    data : mbtrain.bench.data.BenchData
        Training and validation rows (the test rows are never used).
    sizes : list of int
    out : str or Path
        The result folder (results.csv, machine.json, report.md and plots).
    seeds : int
        Seeds ``0 .. seeds-1``; seed ``s`` fixes the initial weights (the same
        for every batch size and optimizer) and the shuffle order.
    optimizers : sequence of str or mbtrain.optim.Optimizer
        One more axis: ``("sgd",)`` by default, e.g. ``("sgd", "momentum",
        "adam")``. results.csv's ``optimizer`` column holds each one's label.
    eta : float or sequence of float
        The reference learning rate of each optimizer, in the order of
        ``optimizers`` (one number only with one optimizer); ``eta_policy``
        scales each optimizer's from its own.
    threads, on_row, progress
        As in :func:`mbtrain.bench.throughput.bench` (threads default to 1;
        with ``jobs`` they are per trial).
    resume : bool
        Continue the run in ``out`` (same settings, checked against its
        machine.json): runs whose ``sweep`` row is in results.csv are not run
        again; the curve points of a run cut short are dropped and the run is
        redone; a last line cut short by a kill is dropped. Without ``resume``
        an existing results.csv is replaced.
    jobs : int or None
        Runs at once. None or 1 (without ``scheduler``): serially in this
        process, rows written as measured. More: joblib worker processes
        (``-1``: one per core); each run's rows are written, by this process
        only, when it finishes. ``seconds_to_target`` is then wall time shared
        with the other runs: the ``executor`` and ``jobs`` columns say so
        (``jobs``: the runs at once, as joblib or the cluster counted them).
        Wherever a run goes, it compiles the kernels it needs (or loads them
        from numba's cache) before its clock starts; those seconds are its
        ``compile_seconds``, never part of ``seconds_to_target``.
    scheduler : str or None
        Address of a ``dask.distributed`` scheduler (``tcp://host:8786``): the
        runs go to its workers, at most ``jobs`` at once (None or -1: as many
        as the cluster takes, one per worker thread). Runs lost with a worker
        are run again by Dask; each is written once. machine.json's
        ``execution`` records the workers and threads the cluster had at the start.

    Returns
    -------
    RunResult (``interrupted`` after Ctrl-C; what was measured is kept and reported).
    """

    # Everything is checked before the folder is touched: a bad setting must not cost an earlier run's results.
    if eta_policy not in ETA_POLICIES:
        raise ValueError(f"eta_policy: unknown policy {eta_policy!r}; choose one of {list(ETA_POLICIES)}")
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs == 0 or jobs < -1):
        raise ValueError(f"jobs: must be a positive number of parallel runs or -1 (one per core; with a "
                         f"scheduler, as many as the cluster takes), got {jobs!r}")
    get_backend(backend)
    plan = optimizers_and_etas(optimizers, eta)
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
    parallel = scheduler is not None or jobs not in (None, 1)
    executor = "dask" if scheduler is not None else "joblib-loky" if parallel else "serial"
    common = dict(dataset=data.name, sizes=",".join(map(str, sizes)), cost=probe.cost.name, dtype=probe.dtype.name,
                  arm=backend, eta_policy=eta_policy, lmbda=lmbda, threads=threads, rows=n, target=target,
                  max_epochs=max_epochs, executor=executor, jobs=1)  # jobs: runs at once, set below
    # Every setting that changes a result; a resumed run must match each (how runs are spread may differ).
    rows_fingerprint = fingerprint(data.X_train, data.y_train, data.X_val, data.y_val)
    settings = dict(dataset=data.name, data_fingerprint=rows_fingerprint, sizes=sizes, cost=probe.cost.name,
                    init=init, dtype=probe.dtype.name, batch_sizes=batch_sizes, target=target,
                    max_epochs=max_epochs, optimizers=[o.describe() for o, _ in plan], eta=[e for _, e in plan],
                    eta_policy=eta_policy, ref_batch_size=ref_batch_size,
                    grid_factors=list(grid_factors), lmbda=lmbda, seeds=seeds,
                    evals_per_epoch=evals_per_epoch, backend=backend, noise_batch_size=noise_batch,
                    train_rows=n, validation_rows=int(X_val.shape[0]), threads=threads)
    rules = {label(o.describe()): o.describe() for o, _ in plan}  # plain data: what a worker rebuilds each from
    runs = [(name, b, e, s) for (o, reference), name in zip(plan, rules) for b in batch_sizes
            for e in etas_for(b, reference, eta_policy, ref_batch_size, grid_factors) for s in range(seeds)]
    # the noise scale along one run: the first optimizer's, seed 0, at the noise batch size and its middle eta
    noise_run = (next(iter(rules)), noise_batch, etas_for(noise_batch, plan[0][1], eta_policy, ref_batch_size,
                                                          grid_factors)[len(grid_factors) // 2 if eta_policy == "grid"
                                                                        else 0], 0)
    trial_settings = dict(sizes=sizes, cost=cost, init=init, dtype=dtype, lmbda=lmbda, target=target,
                          max_epochs=max_epochs, evals_per_epoch=evals_per_epoch, backend=backend)
    interrupted = False
    out.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as held:
        held.enter_context(folder_lock(out))
        previous = check_resumable(out, "sweep", settings) if resume else {}
        info = machine_info(command=command)
        info.update(run="sweep", dataset=data.name, dataset_note=data.note,
                    data_split=getattr(data, "split", None) or None, quick=quick, settings=settings,
                    execution=dict(executor=executor, jobs=1, requested_jobs=jobs, scheduler=scheduler))
        if previous:
            info["resumed_from"] = previous.get("resumed_from", []) + [
                {k: previous.get(k) for k in ("timestamp", "command", "execution", "interrupted")}]
        # The workers are reachable before results.csv is opened (and, without resume, emptied).
        run_parallel = None
        if parallel:
            run_parallel, facts = held.enter_context(_executor(jobs, scheduler, (X, Y, X_val, Y_val)))
            info["execution"].update(facts, jobs=facts["runs_at_once"])
            common["jobs"] = facts["runs_at_once"]
        writer = ResultsWriter(out / "results.csv", on_row=on_row, resume=resume, keep=_keep_finished)

        def record(optimizer, batch_size, run_eta, seed, rows):
            run = dict(common, optimizer=optimizer, batch_size=batch_size, eta=run_eta, seed=seed)
            for row in rows:
                writer.write(**run, **row)

        try:
            done = _finished_runs(writer.rows)
            todo = [run for run in runs if _run_key(*run) not in done]
            with thread_limits(threads) as counts:
                info["threads"] = counts
                # in parallel runs too: it fills numba's on-disk cache, so a worker loads a run's kernels
                # rather than compile them (each run warms its own in its process before its clock starts)
                info["compile_seconds"] = get_backend(backend).compile(
                    probe.dtype.name, probe.cost, batch_sizes=batch_sizes,
                    optimizers=[get_optimizer(o) for o in optimizers])
                write_machine(out / "machine.json", info)
                with tqdm(total=len(runs), initial=len(runs) - len(todo), desc="sweep", unit="run",
                          disable=None if progress is None else not progress) as bar:
                    if run_parallel is None:
                        for run in todo:
                            name, batch_size, run_eta, seed = run
                            bar.set_postfix(optimizer=rules[name]["name"], batch_size=batch_size,
                                            eta=f"{run_eta:.3g}", seed=seed)
                            # rows written as they are measured, so Ctrl-C keeps them; threads already in force
                            run_trial(X, Y, X_val, Y_val, batch_size=batch_size, eta=run_eta, seed=seed,
                                      with_noise=run == noise_run, optimizer=rules[name], threads=None,
                                      emit=lambda row, run=run: record(*run, [row]), **trial_settings)
                            bar.update(1)
                    else:
                        tasks = [(_run_key(*run), dict(batch_size=run[1], eta=run[2], seed=run[3],
                                                       with_noise=run == noise_run, optimizer=rules[run[0]],
                                                       threads=threads, **trial_settings)) for run in todo]
                        for key, rows in run_parallel(tasks):
                            record(*key, rows)
                            bar.update(1)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            writer.close()
        return finish_run(out, info, interrupted, write_report)
