"""``bench``: examples per second of every arm, checked first, against the measured floor.

Every arm trains with one optimizer (SGD by default; momentum, Nesterov or
Adam, see :mod:`mbtrain.optim`). For each arm and dtype: check its update
against the ``loop`` reference running the same optimizer (an arm that
disagrees is reported as wrong and not timed),
compile (reported apart), then for each batch size a warm-up epoch and
``repeats`` timed epochs, every one from the same initial weights over the
same batch order. Arms whose epoch would exceed ``max_epoch_seconds`` (the
per-example ``loop`` on a large data set) are timed on the first rows of that
order, whole mini-batches, and scaled to the full epoch; ``rows_timed`` in
results.csv says so. Each timed epoch also starts from a fresh optimizer state.

Timing is always serial (one measurement at a time, in this process):
measurements run side by side would share cores and caches and time each
other. ``resume=True`` continues an interrupted run: floor, check and timed
rows already in results.csv are not measured again (an arm is still compiled
and warmed up before its remaining epochs are timed).
"""
from __future__ import annotations

import contextlib
import math
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm  # the text bar: tqdm.auto wants ipywidgets in notebooks

from .._validation import check_dtype
from ..costs import get_cost
from ..network import Network
from ..optim import ADAM_KIND, get_optimizer, label
from .arms import get_arm
from .data import fingerprint
from .floor import epoch_bytes, epoch_flops, measure_floor
from .machine import available_cores, check_resumable, machine_info, thread_limits, write_machine
from . import report
from .results import ResultsWriter, folder_lock, read_results
from .steal import cpu_times, steal_between

CHECK_TOLERANCE = {"float32": 1e-4, "float64": 1e-9}
# Adam divides each step by the root mean square of its gradient, so where a gradient is near eps float32's
# rounding of it moves that parameter's step by a large part: measured 2e-5 to 6e-5 against the float64
# reference on Fashion-MNIST [784,30,10] (every backend and peer alike). An eta off by 1 % is still 1e-2.
ADAM_FLOAT32_TOLERANCE = 1e-3
CHECK_ROWS = 32
CHECK_STEPS = 3  # mini-batches of the check for an optimizer with a state: steps 2 and 3 use what step 1 left


@dataclass
class RunResult:
    """What a bench or sweep run left behind."""

    out: Path
    results: pd.DataFrame
    interrupted: bool = False


def finish_run(out, info, interrupted, write_report) -> RunResult:
    """Record how a bench or sweep ended in machine.json, rebuild its report, return the result.

    Also the hypervisor's steal since the run began (``steal_share``; None where not measured).

    Ctrl-C (or SIGTERM, which the CLI turns into one) while this runs still
    leaves a report of what was measured, marked partial; a further Ctrl-C is
    ignored until it is written.
    """
    try:
        info["interrupted"] = interrupted
        steal = steal_between(info.get("cpu_times_at_start"), cpu_times())
        info["steal_share"] = None if steal is None or steal.share != steal.share else steal.share
        write_machine(out / "machine.json", info)
        if write_report:
            report.write_report(out)
    except KeyboardInterrupt:
        interrupted = info["interrupted"] = True
        with _ignoring_sigint():
            write_machine(out / "machine.json", info)
            if write_report:
                print(f"interrupted: writing the report of what was measured to {out / 'report.md'}",
                      file=sys.stderr)
                report.write_report(out, partial=True)
    return RunResult(out, read_results(out), interrupted)


@contextlib.contextmanager
def _ignoring_sigint():
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: signals are not delivered here anyway
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def check_tolerance(dtype, optimizer="sgd") -> float:
    """The largest relative error of :func:`update_error` that passes for ``dtype`` and ``optimizer``."""
    if np.dtype(dtype) == np.float32 and get_optimizer(optimizer).kind_id == ADAM_KIND:
        return ADAM_FLOAT32_TOLERANCE
    return CHECK_TOLERANCE[np.dtype(dtype).name]


def check_steps(optimizer) -> int:
    """Mini-batches of the correctness check: one for SGD (it keeps no state), :data:`CHECK_STEPS` otherwise."""
    return CHECK_STEPS if get_optimizer(optimizer).state_names else 1


def update_error(arm, net, X, Y, eta, lmbda, n, rows=CHECK_ROWS, optimizer="sgd") -> float:
    """Relative error of ``arm``'s update against the ``loop`` reference running the same optimizer.

    Both start from ``net``'s weights and a fresh optimizer state and take
    :func:`check_steps` steps on mini-batches of ``rows`` rows (one step for
    SGD; with a state, fewer when ``X`` has fewer rows); the reference runs in
    float64 with the loss the arm trains and the rule it runs
    (:meth:`~mbtrain.bench.arms.Arm.update_rule`). The error is
    ``||u_arm - u_ref|| / ||u_ref||`` over the whole parameter vector.
    """
    optimizer = get_optimizer(optimizer)
    batch = min(rows, X.shape[0])
    m = batch * max(1, min(check_steps(optimizer), X.shape[0] // batch))
    order = np.arange(m, dtype=np.int64)
    runner = arm.runner(net, X[:m], Y[:m], optimizer)
    before = runner.params().astype(np.float64)
    runner.epoch(order, batch, eta, lmbda, n)
    update = runner.params().astype(np.float64) - before

    reference = net.astype("float64")
    reference.cost = get_cost(arm.loss_name(net))
    ref_runner = get_arm("loop").runner(reference, X[:m].astype(np.float64), Y[:m].astype(np.float64),
                                        arm.update_rule(optimizer))
    ref_runner.epoch(order, batch, eta, lmbda, n)
    ref_update = ref_runner.params() - before
    scale = float(np.linalg.norm(ref_update)) or 1.0
    return float(np.linalg.norm(update - ref_update)) / scale


def _whole_batches(rows, batch_size, n):
    return int(min(n, max(batch_size, math.ceil(rows / batch_size) * batch_size)))


def bench(X, y, sizes, *, out, cost="quadratic", init="gaussian", eta=3.0, lmbda=0.0,
          batch_sizes=(1, 10, 100, 1000), arms=("loop", "numpy", "numba", "torch", "sklearn"),
          dtypes=("float32", "float64"), repeats=5, seed=0, threads=1, max_epoch_seconds=2.0,
          dataset="custom", dataset_note="", quick=False, command=None, on_row=None, progress=None,
          write_report=True, resume=False, optimizer="sgd", data_split=None) -> RunResult:
    """Time one training epoch of each arm, batch size and dtype; write results.csv, machine.json, report.

    Parameters
    ----------
    X : array (n_samples, sizes[0])
    y : int labels (n_samples,)
    sizes : list of int
    out : str or Path
        The result folder (created; results.csv and report.md in it are replaced).
    eta, lmbda : float
        The learning rate and L2 strength of every arm (and of the correctness check).
    arms : sequence of str
        Names in :data:`mbtrain.bench.arms.ARMS`; unavailable ones are reported and skipped.
    repeats : int
        Timed epochs per arm, batch size and dtype (after one warm-up epoch).
    threads : int or None
        Threads for BLAS, numba and torch alike; None: every available core.
        The default, 1, compares arms per core: with several thread pools
        loaded (OpenBLAS, torch's OpenMP, scikit-learn's) their spin-waiting
        threads slow each other down 10-100x on a small machine.
    max_epoch_seconds : float
        Arms slower than this per epoch are timed on a subset of rows and scaled.
    on_row : callable or None
        Called after each row is on disk (tests interrupt a run from it).
    progress : bool or None
        tqdm progress bar; None shows it only on a terminal.
    resume : bool
        Continue the run in ``out`` (same settings, the optimizer included,
        checked against its machine.json): measurements already in results.csv
        are skipped, a last line cut short by a kill is dropped. Without it an
        existing results.csv is replaced.
    optimizer : str or mbtrain.optim.Optimizer
        ``"sgd"`` (default), ``"momentum"``, ``"nesterov"``, ``"adam"`` or an
        object with its hyperparameters: what every arm trains with (PyTorch
        the matching ``torch.optim``, scikit-learn its ``solver``). results.csv's
        ``optimizer`` column holds its label, machine.json's settings its description.
    data_split : dict or None
        How a user's file was split into test, validation and training rows
        (:func:`mbtrain.bench.data.load_file_data`), recorded in machine.json.

    Returns
    -------
    RunResult, with ``interrupted`` True after Ctrl-C (everything measured is kept
    and the report is written for it).
    """
    # Everything is checked before the folder is touched: a bad setting must not cost an earlier run's results.
    out = Path(out)
    X = np.asarray(X)
    labels = np.asarray(y, dtype=np.int64)
    n = X.shape[0]
    sizes = [int(s) for s in sizes]
    if X.ndim != 2 or X.shape[1] != sizes[0] or labels.shape != (n,) or n == 0 \
            or labels.min() < 0 or labels.max() >= sizes[-1]:
        raise ValueError(f"bench: X {X.shape} and y {labels.shape} do not fit sizes {sizes} (X needs "
                         f"{sizes[0]} columns, y one label in 0..{sizes[-1] - 1} per row)")
    dtypes = [check_dtype(dtype).name for dtype in dtypes]
    optimizer = get_optimizer(optimizer)
    threads = threads or available_cores()
    arm_objects = [get_arm(name) for name in arms]
    base = Network(sizes, cost=cost, init=init, dtype="float64", seed=seed)
    order = np.random.default_rng(seed).permutation(n).astype(np.int64)
    common = dict(dataset=dataset, sizes=",".join(map(str, sizes)), cost=base.cost.name, eta=eta,
                  lmbda=lmbda, seed=seed, threads=threads, rows=n, executor="serial", jobs=1)
    trained = dict(common, optimizer=label(optimizer.describe()))  # check and bench rows; a floor has no optimizer
    # Every setting that changes a result (quick: the floor's GEMM size); a resumed run must match each.
    settings = dict(dataset=dataset, data_fingerprint=fingerprint(X, labels), sizes=sizes, cost=base.cost.name,
                    init=init, eta=eta, lmbda=lmbda, batch_sizes=list(batch_sizes), arms=list(arms),
                    dtypes=dtypes, repeats=repeats, seed=seed, max_epoch_seconds=max_epoch_seconds, rows=n,
                    threads=threads, quick=bool(quick), optimizer=optimizer.describe())
    usable = [a for a in arm_objects if a.unavailable_reason(base) is None]
    out.mkdir(parents=True, exist_ok=True)
    with folder_lock(out):
        previous = check_resumable(out, "bench", settings) if resume else {}
        info = machine_info(command=command)
        info.update(run="bench", dataset=dataset, dataset_note=dataset_note, data_split=data_split or None,
                    quick=quick, settings=settings,
                    execution=dict(executor="serial", jobs=1),
                    arms={a.name: {"kind": a.kind, "description": a.description} for a in arm_objects})
        if previous:
            info["resumed_from"] = previous.get("resumed_from", []) + [
                {k: previous.get(k) for k in ("timestamp", "command", "interrupted")}]
            if "floor" in previous:
                info["floor"] = previous["floor"]
        interrupted = False
        writer = ResultsWriter(out / "results.csv", on_row=on_row, resume=resume)
        try:
            done = _Done(writer.rows)
            with thread_limits(threads, arms=usable) as counts:
                info["threads"] = counts
                write_machine(out / "machine.json", info)
                floors = _floors(done, dtypes, sizes, n, quick, info, out, writer, common)
                total = len(arm_objects) * len(dtypes) * len(batch_sizes) * repeats
                bar = tqdm(total=total, desc="bench", unit="epoch",
                           disable=None if progress is None else not progress)
                bar.update(min(total, done.timed))
                try:
                    for dtype in dtypes:
                        net = base.astype(dtype)
                        Xd = np.ascontiguousarray(X, dtype=net.dtype)
                        Yd = np.zeros((n, sizes[-1]), dtype=net.dtype)
                        Yd[np.arange(n), labels] = 1
                        for arm in arm_objects:
                            _bench_arm(arm, net, Xd, Yd, order, writer, trained, floors[dtype], dtype,
                                       batch_sizes, repeats, eta, lmbda, max_epoch_seconds, bar, done, optimizer)
                finally:
                    bar.close()
        except KeyboardInterrupt:
            interrupted = True
        finally:
            writer.close()
        return finish_run(out, info, interrupted, write_report)


def _floors(done, dtypes, sizes, n, quick, info, out, writer, common) -> dict:
    """The epoch floor per dtype: from the run being resumed, or measured (and written) now."""
    floors = {dtype: done.floor(dtype) for dtype in dtypes}
    missing = [dtype for dtype in dtypes if floors[dtype] is None]
    if not missing:
        return floors
    floor = measure_floor(dtypes, quick=quick)
    info["floor"] = floor.describe()
    write_machine(out / "machine.json", info)
    for dtype in missing:
        floors[dtype] = floor.epoch_floor(sizes, n, dtype)
        writer.write(kind="floor", dtype=dtype, **common, **floors[dtype], **floor.row(dtype),
                     epoch_flops=epoch_flops(sizes, n), epoch_bytes=epoch_bytes(sizes, n, dtype))
    return floors


class _Done:
    """What an interrupted run already measured (rows of results.csv, as strings), to skip it on resume."""

    FLOOR_KEYS = ("floor_seconds", "floor_bound", "compute_floor_seconds", "memory_floor_seconds")

    def __init__(self, rows):
        self.floors = {r["dtype"]: r for r in rows if r["kind"] == "floor"}
        self.checks = {(r["arm"], r["dtype"]): r for r in rows if r["kind"] == "check"}
        self.epochs = {(r["arm"], r["dtype"], int(r["batch_size"]), int(r["repeat"]))
                       for r in rows if r["kind"] == "bench"}
        self.timed = len(self.epochs)

    def floor(self, dtype):
        row = self.floors.get(dtype)
        if row is None:
            return None
        return {k: row[k] if k == "floor_bound" else float(row[k]) for k in self.FLOOR_KEYS}

    def check(self, arm, dtype):
        """``(status, error, compile_seconds)`` of a recorded check, or None."""
        row = self.checks.get((arm, dtype))
        if row is None:
            return None
        as_float = (lambda text: float(text) if text else float("nan"))
        return row["status"], as_float(row["check_error"]), as_float(row["compile_seconds"])


def _bench_arm(arm, net, X, Y, order, writer, common, floor, dtype, batch_sizes, repeats, eta, lmbda,
               max_epoch_seconds, bar, done, optimizer):
    done = done or _Done([])
    n = X.shape[0]
    row = dict(common, arm=arm.name, arm_kind=arm.kind, loss=arm.loss_name(net), dtype=dtype)
    recorded = done.check(arm.name, dtype)
    remaining = {(int(min(b, n)), r) for b in batch_sizes for r in range(repeats)} - {
        (b, r) for a, d, b, r in done.epochs if a == arm.name and d == dtype}
    if recorded is not None and (recorded[0] != "ok" or not remaining):
        return  # reported (wrong, unavailable) or fully timed in the run being resumed
    reason = arm.unavailable_reason(net)
    if reason is not None:
        writer.write(kind="check", status="unavailable", note=reason, **row)
        bar.update(len(batch_sizes) * repeats)
        return
    # only the kernels this arm will run: its batch sizes and the check's mini-batches, its optimizer
    planned = sorted({int(min(b, n)) for b in batch_sizes} | {int(min(CHECK_ROWS, n))})
    compile_seconds = arm.compile(net, batch_sizes=planned, optimizer=get_optimizer(optimizer))
    tolerance = check_tolerance(dtype, optimizer)
    if recorded is not None:
        status, error, compile_seconds = recorded
    else:
        try:
            error = update_error(arm, net, X, Y, eta, lmbda, n, optimizer=optimizer)
            status = "ok" if error <= tolerance else "wrong"
            note = "" if status == "ok" else "update disagrees with the loop reference: not timed"
        except Exception as exc:  # an arm that crashes is as wrong as one that disagrees
            error, status, note = float("nan"), "wrong", f"check raised {type(exc).__name__}: {exc}"
        writer.write(kind="check", status=status, check_error=error, check_tolerance=tolerance,
                     compile_seconds=compile_seconds, note=note, steps=check_steps(optimizer), **row)
    if status != "ok":
        bar.update(len(batch_sizes) * repeats)
        return
    with arm.timing_context():
        _time_batch_sizes(arm.runner(net, X, Y, optimizer), order, batch_sizes, repeats, remaining, n, eta,
                          lmbda, max_epoch_seconds, writer, bar, floor, row, compile_seconds, error)


def _time_batch_sizes(runner, order, batch_sizes, repeats, remaining, n, eta, lmbda,
                      max_epoch_seconds, writer, bar, floor, row, compile_seconds, error):
    for batch_size in batch_sizes:
        batch_size = int(min(batch_size, n))
        repeats_left = [r for r in range(repeats) if (batch_size, r) in remaining]
        if not repeats_left:
            continue
        # Warm-up on a probe of the order; its speed decides whether a full epoch fits the budget.
        probe = _whole_batches(min(n, max(4 * batch_size, 256)), batch_size, n)
        runner.reset()
        start = time.perf_counter()
        runner.epoch(order[:probe], batch_size, eta, lmbda, n)
        warmup = time.perf_counter() - start
        estimate = warmup * n / probe
        rows_timed = n if estimate <= max_epoch_seconds else _whole_batches(
            max(probe, n * max_epoch_seconds / estimate), batch_size, n)
        for repeat in repeats_left:
            runner.reset()
            start = time.perf_counter()
            runner.epoch(order[:rows_timed], batch_size, eta, lmbda, n)
            seconds = (time.perf_counter() - start) * n / rows_timed
            writer.write(kind="bench", status="ok", batch_size=batch_size, repeat=repeat, rows_timed=rows_timed,
                         epoch_seconds=seconds, examples_per_second=n / seconds, compile_seconds=compile_seconds,
                         warmup_seconds=warmup, check_error=error, **floor, **row)
            bar.update(1)
