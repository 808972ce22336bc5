"""The speed targets of issue 14, measured in one run on this machine, each with its ratio and met / not met.

On Fashion-MNIST (50,000 training rows; ``--quick``: the shipped digits), float32,
for ``[784, 30, 10]`` quadratic (eta 3) and ``[784, 100, 10]`` cross-entropy
(scaled init, eta 0.5, L2 lmbda 5), on each thread count of ``--threads``
(numba and BLAS through ``mbtrain.threads.limit``, PyTorch ``set_num_threads``):

- batch 10: numba <= 2.0 x the one-thread floor;
- batch 100 and 1000: numba <= 1.6 x the floor at the same thread count;
- every batch size (1, 10, 100, 1000): numba >= 1.2 x faster than the fastest
  other arm (the numpy backend, a plain numpy matrix loop, PyTorch when installed);
- batch 1: numba >= 25 x faster than the per-example loop.

Seconds per epoch: for mbtrain's backends (numba, numpy, loop) the history's
``seconds`` of ``net.fit(..., monitor=False)`` (JIT compiling reported apart);
for the runners of :mod:`mbtrain.bench.arms` (plain numpy, PyTorch) the same
epoch timed around ``runner.epoch``. The median of ``--epochs`` epochs after a
warm-up; an arm whose epoch would take over ``--max-epoch-seconds`` (the loop,
and batch 1 outside numba) is timed on the first rows of the shuffled order,
whole mini-batches, and scaled per example (``rows timed`` says so). Every arm
except the loop is first checked against the loop reference
(:func:`mbtrain.bench.throughput.update_error`); a wrong arm is not timed.

The floor (:mod:`mbtrain.bench.floor`) is the epoch's FLOPs at the higher of
numpy's GEMM rate and the FMA peak probe, or its bytes at the bandwidth (the
higher of a numba read probe on every thread and numpy's one-core sum),
measured at each thread count before and after its epochs (the measurement
with the higher compute rate is kept: on a shared machine a neighbour only
ever lowers a measured peak). The environment is recorded as found
(``OPENBLAS_*``, ``MKL_*``, ``OMP_*``, ``BLIS_*``): this script sets and
unsets nothing in it; the report warns when BLAS runs a kernel narrower than
the CPU supports. Each timing and floor records the share of CPU time the
hypervisor took while it ran (``steal_share``, :mod:`mbtrain.bench.steal`),
and the report warns when it was over 5%. On each thread count above one it
measures how much of one thread's L1 work the threads do together
(:mod:`mbtrain.bench.cores`) and warns when they share cores (kernels that
load and store then run further from that floor). Writes epochs.csv, floors.csv,
targets.csv, machine.json and report.md to benchmarks/results/speed_targets/
(``--quick``: speed_targets_quick/) and prints the targets.

    .venv/bin/python benchmarks/speed_targets.py                 # the measurement (a few minutes)
    .venv/bin/python benchmarks/speed_targets.py --quick         # a smoke run on digits
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

import mbtrain
from mbtrain.bench import cores
from mbtrain.bench.arms import Arm, get_arm
from mbtrain.bench.data import load_data
from mbtrain.bench.floor import epoch_bytes, epoch_flops, measure_floor
from mbtrain.bench.machine import machine_info, narrower_blas_warnings, write_machine
from mbtrain.bench.markdown import fmt, markdown_table
from mbtrain.bench.steal import StealMeter, steal_warning
from mbtrain.bench.throughput import check_tolerance, update_error
from mbtrain.optim import SGD

RESULTS = Path(__file__).resolve().parent / "results"
BATCH_SIZES = (1, 10, 100, 1000)
OTHER_ARMS = ("numpy", "numpy_plain", "torch")  #: the arms numba must beat by MIN_LEAD
FIT_ARMS = ("numba", "numpy", "loop")  #: mbtrain backends: timed from the history of net.fit
NETWORKS = (  # (hidden layers, cost, init, eta, lmbda): the book's chapter-1 and chapter-3 networks
    ((30,), "quadratic", "gaussian", 3.0, 0.0),
    ((100,), "cross_entropy", "scaled", 0.5, 5.0),
)
BATCH_10_FLOOR, LARGE_BATCH_FLOOR, MIN_LEAD, MIN_OVER_LOOP = 2.0, 1.6, 1.2, 25.0
DTYPE = "float32"


class PlainNumpyRunner:
    """Mini-batch SGD as a user would write it in numpy: gather the rows, matrix products, update in place.

    The comparison the numba backend must beat besides mbtrain's own numpy
    backend: no backend protocol, no preallocated buffers. Sigmoid layers;
    quadratic or cross-entropy cost; the book's L2 rule
    ``w <- (1 - eta*lmbda/n) w - (eta/m) sum grad C_x``.
    """

    def __init__(self, net, X, Y):
        self.cost, self.initial = net.cost.name, net.params.copy()
        self.layout, self.dtype = net.layout, net.dtype
        self.X, self.Y = np.ascontiguousarray(X, dtype=net.dtype), np.ascontiguousarray(Y, dtype=net.dtype)
        self.reset()

    def reset(self):
        ws, bs = self.layout.views(self.initial)
        self.weights, self.biases = [w.copy() for w in ws], [b.copy() for b in bs]

    def params(self):
        return self.layout.pack(self.weights, self.biases, self.dtype)

    @np.errstate(over="ignore")  # exp(-z) overflows for a saturated unit: its activation is then exactly 0
    def epoch(self, order, batch_size, eta, lmbda, n):
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            activations = [self.X[rows]]
            for w, b in zip(self.weights, self.biases):
                activations.append(1.0 / (1.0 + np.exp(-(activations[-1] @ w.T + b))))
            out = activations[-1]
            delta = out - self.Y[rows]
            if self.cost == "quadratic":
                delta *= out * (1.0 - out)
            step = eta / len(rows)
            for layer in range(len(self.weights) - 1, -1, -1):
                w, a_in = self.weights[layer], activations[layer]
                below = (delta @ w) * a_in * (1.0 - a_in) if layer else None
                w *= 1.0 - eta * lmbda / n
                w -= step * (delta.T @ a_in)
                self.biases[layer] -= step * delta.sum(axis=0)
                delta = below


class PlainNumpyArm(Arm):
    name, kind = "numpy_plain", "peer"
    description = "a plain numpy matrix loop (rows gathered, products, in-place update; no mbtrain backend)"

    def unavailable_reason(self, net):
        if net.cost.name not in ("quadratic", "cross_entropy"):
            return f"no plain numpy version of cost {net.cost.name!r}"
        return None

    def runner(self, net, X, Y, optimizer):
        return PlainNumpyRunner(net, X, Y)


def arm_object(name) -> Arm:
    return PlainNumpyArm() if name == "numpy_plain" else get_arm(name)


def _whole_batches(rows, batch_size, n):
    return int(min(n, max(batch_size, math.ceil(rows / batch_size) * batch_size)))


def _rows_to_time(warm_seconds, probe_rows, batch_size, n, max_epoch_seconds):
    """All ``n`` rows when the epoch fits ``max_epoch_seconds``, else the whole mini-batches that do."""
    estimate = warm_seconds * n / probe_rows
    if estimate <= max_epoch_seconds:
        return n
    return _whole_batches(max(probe_rows, n * max_epoch_seconds / estimate), batch_size, n)


def network_sizes(network, data) -> tuple:
    """``(label, sizes)`` of ``network`` on ``data``: "[784,30,10] quadratic" on Fashion-MNIST."""
    hidden, cost = network[:2]
    sizes = [data.n_features, *hidden, data.n_classes]
    return f"[{','.join(map(str, sizes))}] {cost.replace('_', '-')}", sizes


def fit_epochs(backend, net, X, y, batch_size, network, epochs, max_epoch_seconds):
    """``(seconds per epoch, rows timed, compile seconds)`` of ``net.fit`` from its history, scaled to all rows."""
    eta, lmbda = network[3:]
    n = len(X)
    probe = _whole_batches(min(n, max(4 * batch_size, 256)), batch_size, n)
    fit = dict(batch_size=batch_size, eta=eta, lmbda=lmbda, backend=backend, monitor=False, progress=False)
    warm = net.copy().fit(X[:probe], y[:probe], epochs=1, seed=1, **fit)  # compiles, and sizes the epoch
    rows = _rows_to_time(float(warm["seconds"].iloc[0]), probe, batch_size, n, max_epoch_seconds)
    history = net.copy().fit(X[:rows], y[:rows], epochs=epochs, seed=2, **fit)
    return [float(s) * n / rows for s in history["seconds"]], rows, float(warm.attrs.get("compile_seconds", 0.0))


def runner_epochs(arm, net, X, Y, batch_size, network, epochs, max_epoch_seconds):
    """``(seconds per epoch, rows timed, compile seconds)`` of an arm's runner, each epoch from the same weights."""
    eta, lmbda = network[3:]
    n = len(X)
    compile_seconds = arm.compile(net, batch_sizes=[batch_size], optimizer=SGD())
    runner = arm.runner(net, X, Y, SGD())
    order = np.random.default_rng(1).permutation(n).astype(np.int64)
    probe = _whole_batches(min(n, max(4 * batch_size, 256)), batch_size, n)
    seconds = []
    with arm.timing_context():
        start = time.perf_counter()
        runner.epoch(order[:probe], batch_size, eta, lmbda, n)  # the warm-up
        rows = _rows_to_time(time.perf_counter() - start, probe, batch_size, n, max_epoch_seconds)
        for _ in range(epochs):
            runner.reset()
            start = time.perf_counter()
            runner.epoch(order[:rows], batch_size, eta, lmbda, n)
            seconds.append((time.perf_counter() - start) * n / rows)
    return seconds, rows, compile_seconds


def measure_network(network, data, threads, floor, epochs, max_epoch_seconds) -> list[dict]:
    """One row per arm and batch size of ``network`` on ``threads`` threads (epochs, check, floor ratio)."""
    _, cost, init, eta, lmbda = network
    label, sizes = network_sizes(network, data)
    X, y = data.X_train, data.y_train
    net = mbtrain.Network(sizes, cost=cost, init=init, dtype=DTYPE, seed=0)
    Y = np.eye(sizes[-1], dtype=X.dtype)[y]
    floor_seconds = floor.epoch_floor(sizes, len(X), DTYPE)["floor_seconds"]
    rows = []
    for name in ("numba", "numpy", "numpy_plain", "torch", "loop"):
        arm = arm_object(name)
        base = dict(network=label, sizes=",".join(map(str, sizes)), threads=threads, arm=name, rows=len(X))
        reason = arm.unavailable_reason(net)
        error = 0.0 if name == "loop" or reason else update_error(arm, net, X, Y, eta, lmbda, len(X))
        if reason or error > check_tolerance(DTYPE):
            status = "unavailable" if reason else "wrong"
            rows.append(dict(base, status=status, check_error=error,
                             note=reason or "update disagrees with the loop reference: not timed"))
            continue
        restore = arm.set_threads(threads)
        try:
            for batch_size in (1,) if name == "loop" else BATCH_SIZES:
                batch_size = min(batch_size, len(X))
                try:
                    with StealMeter() as steal:
                        if name in FIT_ARMS:
                            seconds, timed, compile_seconds = fit_epochs(name, net, X, y, batch_size, network,
                                                                         epochs, max_epoch_seconds)
                        else:
                            seconds, timed, compile_seconds = runner_epochs(arm, net, X, Y, batch_size, network,
                                                                            epochs, max_epoch_seconds)
                except (mbtrain.TrainingDiverged, FloatingPointError) as exc:
                    rows.append(dict(base, status="diverged", batch_size=batch_size, check_error=error,
                                     note=f"{type(exc).__name__}: {exc}"))
                    continue
                median = statistics.median(seconds)
                rows.append(dict(base, status="ok", batch_size=batch_size, rows_timed=timed, epochs=len(seconds),
                                 median_seconds=median, min_seconds=min(seconds), max_seconds=max(seconds),
                                 compile_seconds=compile_seconds, check_error=error, floor_seconds=floor_seconds,
                                 times_floor=median / floor_seconds, steal_share=steal.share))
        finally:
            restore()
    return rows


def evaluate(epochs: pd.DataFrame, floors: pd.DataFrame) -> pd.DataFrame:
    """Every target per network and thread count: ``measured`` ratio, ``threshold``, ``met`` (met / not met /
    not measured), and what the ratio is taken ``against``.

    ``epochs``: rows of :func:`measure_network`; ``floors``: ``network``,
    ``threads``, ``floor_seconds`` (the one-thread floor must be among them).
    Met or not is decided on the medians; with ``min_seconds`` in ``epochs``,
    ``fastest_epochs`` gives the same ratio from each arm's fastest epoch
    beside it: on a shared machine whose epochs move in phases (on this
    project's, one process's epochs took 101-113 ms for three fits and 151-162
    for the next three), the two columns show how far the run's spread reaches.
    """
    targets = _evaluate(epochs, floors, "median_seconds")
    if "min_seconds" in epochs:
        fastest = _evaluate(epochs, floors, "min_seconds")["measured"]
        targets.insert(targets.columns.get_loc("measured") + 1, "fastest_epochs", fastest)
    return targets


def _evaluate(epochs, floors, column):
    """:func:`evaluate` on the seconds in ``column``: ``median_seconds``, or ``min_seconds`` (fastest epochs)."""
    ok = epochs[epochs["status"] == "ok"]
    seconds = ok.set_index(["network", "threads", "arm", "batch_size"])[column].to_dict()
    floor = floors.set_index(["network", "threads"])["floor_seconds"].to_dict()
    rows = []

    def add(network, threads, target, batch_size, top, bottom, sign, threshold, against):
        ratio = top / bottom if top is not None and bottom is not None else math.nan
        met = ("not measured" if math.isnan(ratio) else
               "met" if (ratio <= threshold if sign == "<=" else ratio >= threshold) else "not met")
        rows.append(dict(network=network, threads=threads, target=target, batch_size=batch_size, measured=ratio,
                         threshold=f"{sign} {threshold:g}", met=met, against=against))

    for network, threads in dict.fromkeys(zip(epochs["network"], epochs["threads"])):
        numba = {b: seconds.get((network, threads, "numba", b)) for b in BATCH_SIZES}
        add(network, threads, "batch 10: numba / one-thread floor", 10, numba[10], floor.get((network, 1)),
            "<=", BATCH_10_FLOOR, "floor on 1 thread")
        for b in (100, 1000):
            add(network, threads, f"batch {b}: numba / floor", b, numba[b], floor.get((network, threads)),
                "<=", LARGE_BATCH_FLOOR, f"floor on {threads} thread{'s' if threads > 1 else ''}")
        for b in BATCH_SIZES:
            others = {arm: seconds[(network, threads, arm, b)] for arm in OTHER_ARMS
                      if (network, threads, arm, b) in seconds}
            best = min(others, key=others.get) if others else None
            add(network, threads, f"batch {b}: fastest other arm / numba", b, others.get(best), numba[b], ">=",
                MIN_LEAD, f"{best} (fastest of {', '.join(others)})" if best else "no other arm measured")
        add(network, threads, "batch 1: loop / numba", 1, seconds.get((network, threads, "loop", 1)), numba[1],
            ">=", MIN_OVER_LOOP, "per-example loop")
    return pd.DataFrame(rows, columns=["network", "threads", "target", "batch_size", "measured", "threshold",
                                       "met", "against"])


def faster_floor(before, after):
    """Of the floors measured before and after a thread count's epochs, the one with the higher compute rate,
    with the higher bandwidth of the two.

    A neighbour's burst on a shared machine only ever lowers a measured peak
    (one run's two-thread probe read 238 GFLOP/s, the others 459-484), and a
    lower peak is a looser floor: the higher of two measurements is the honest one.
    """
    faster = after if after.compute_rate(DTYPE)[0] > before.compute_rate(DTYPE)[0] else before
    wider = after if after.bandwidth_bytes_per_second > before.bandwidth_bytes_per_second else before
    return dataclasses.replace(faster, bandwidth_bytes_per_second=wider.bandwidth_bytes_per_second,
                               numpy_bandwidth_bytes_per_second=wider.numpy_bandwidth_bytes_per_second,
                               probe_bandwidth_bytes_per_second=wider.probe_bandwidth_bytes_per_second)


def with_floor(row, floor, data) -> dict:
    """An epoch row of :func:`measure_network` with its floor ratio recomputed against ``floor``."""
    if row.get("status") != "ok":
        return row
    network = next(net for net in NETWORKS if network_sizes(net, data)[0] == row["network"])
    floor_seconds = floor.epoch_floor(network_sizes(network, data)[1], row["rows"], DTYPE)["floor_seconds"]
    return dict(row, floor_seconds=floor_seconds, times_floor=row["median_seconds"] / floor_seconds)


def measured_floor(quick):
    """``(floor, steal share)``: :func:`measure_floor` in float32, and the hypervisor's steal while it ran."""
    with StealMeter() as steal:
        floor = measure_floor((DTYPE,), quick=quick)
    return floor, steal.share


def floor_rows(floor, network, data, threads, steal_share=math.nan) -> dict:
    label, sizes = network_sizes(network, data)
    n = len(data.X_train)
    rate, source = floor.compute_rate(DTYPE)
    return dict(network=label, threads=threads, dtype=DTYPE, steal_share=steal_share,
                **floor.epoch_floor(sizes, n, DTYPE),
                gemm_gflops=floor.gemm_flops_per_second[DTYPE] / 1e9,
                probe_gflops=floor.probe_flops_per_second.get(DTYPE, math.nan) / 1e9,
                compute_rate_source=source, bandwidth_gbs=floor.bandwidth_bytes_per_second / 1e9,
                bandwidth_source=floor.bandwidth_source, epoch_gflop=epoch_flops(sizes, n) / 1e9,
                epoch_mb_read=epoch_bytes(sizes, n, DTYPE) / 1e6)


def steal_lines(epochs: pd.DataFrame, floors: pd.DataFrame) -> list[str]:
    """The hypervisor's steal during the timings (:mod:`mbtrain.bench.steal`), and a warning when it was high."""
    shares = [s for frame in (epochs, floors) for s in frame.get("steal_share", pd.Series(dtype=float))]
    measured = [s for s in shares if s == s]
    if not measured:
        return ["- Hypervisor steal (`/proc/stat`): not measured on this system"]
    lines = [f"- Hypervisor steal (`/proc/stat`) during the timings: median {statistics.median(measured):.1%}, "
             f"highest {max(measured):.1%} (per measurement in the `steal_share` columns)"]
    warning = steal_warning(measured, " during this run's timings")
    return lines + ([f"- **Warning: {warning}**"] if warning else [])


def machine_lines(info) -> list[str]:
    blas = "; ".join(f"{p.get('internal_api')} {p.get('version')} ({p.get('architecture')}, "
                     f"{p.get('kernel_isa') or 'ISA unknown'})" for p in info["blas"] if p.get("user_api") == "blas")
    env = ", ".join(f"`{k}={v}`" for k, v in info["environment"].items()) or "none set"
    lines = [f"- CPU: {info['cpu_model']}, {info['available_cores']} cores available; vector ISA **{info['isa']}** "
             f"({info['isa_source']}); numba compiles for {info['numba_target']['cpu']} "
             f"({info['numba_target']['isa']})",
             f"- BLAS kernel: {blas or 'none loaded'}",
             f"- BLAS and thread variables (recorded as found, none changed): {env}"]
    lines += [f"- **Warning: BLAS runs a kernel narrower than the CPU supports.** {s}"
              for s in narrower_blas_warnings(info)]
    scaling = {int(n): value for n, value in info.get("core_scaling", {}).items()}
    if scaling:
        lines.append("- The threads' L1 work against one thread's (`mbtrain/bench/cores.py`: a load, a multiply-add "
                     "and a store per value of a block in L1 each): "
                     + ", ".join(f"{n} threads {value:.2f}x" for n, value in sorted(scaling.items())))
    lines += [f"- **Warning: the threads share cores.** {w}" for n, value in sorted(scaling.items())
              if (w := cores.shared_cores_warning(value, n))]
    return lines


def report(data, info, epochs, floors, targets, settings) -> str:
    lines = ["# Speed targets (issue 14)", "",
             f"Data: {data.note}. float32; seconds per epoch are medians of {settings['epochs']} epochs after a "
             "warm-up (mbtrain's backends: the history's `seconds` of `net.fit(monitor=False)`; plain numpy and "
             "PyTorch: their runner's epoch); compile time apart. Command: "
             f"`{info['command']}`.", "", "## Machine", "", *machine_lines(info), *steal_lines(epochs, floors), "",
             "## Targets", "",
             markdown_table(targets), "## Floors", "",
             "The epoch's FLOPs at the higher of numpy's GEMM rate and the FMA peak probe (`compute rate from`), "
             "or its bytes at the bandwidth (`bandwidth_source`: the read probe on every thread or numpy's one-core "
             "sum, the higher), whichever takes longer; measured at each thread count. `fastest_epochs` in the "
             "targets: the same ratio from each arm's fastest epoch (met or not is the medians').", "",
             markdown_table(floors), "## Seconds per epoch", ""]
    shown = epochs.copy()
    shown["rows timed"] = [("" if pd.isna(t) else f"{int(t)}" + ("" if t == r else f" of {int(r)}"))
                           for t, r in zip(shown.get("rows_timed", pd.Series(dtype=float)), shown["rows"])]
    columns = ["network", "threads", "arm", "batch_size", "status", "median_seconds", "min_seconds", "max_seconds",
               "times_floor", "steal_share", "compile_seconds", "check_error", "rows timed", "note"]
    table = shown.reindex(columns=columns)
    table["note"] = table["note"].astype(object).fillna("")  # an all-empty note column is read as float
    lines += [markdown_table(table), ""]
    return "\n".join(lines)


def parse_threads(text) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"--threads: expected a comma list of thread counts >= 1, got {text!r}")
    return sorted(set(counts))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: digits, 2 epochs, quick floor")
    parser.add_argument("--threads", type=parse_threads, default=[1, 2], help="thread counts (default 1,2)")
    parser.add_argument("--epochs", type=int, default=None, help="timed epochs per measurement (default 5; quick 2)")
    parser.add_argument("--max-epoch-seconds", type=float, default=None,
                        help="time slower epochs on a subset of rows and scale (default 1.0; quick 0.2)")
    parser.add_argument("--dataset", default=None, help="fashion-mnist (default), mnist or digits (--quick)")
    parser.add_argument("--out", type=Path, default=None, help="result folder")
    args = parser.parse_args(argv)
    epochs = args.epochs or (2 if args.quick else 5)
    if epochs < 1:
        parser.error(f"--epochs: must be >= 1, got {epochs}")
    max_epoch_seconds = args.max_epoch_seconds or (0.2 if args.quick else 1.0)
    out = args.out or RESULTS / ("speed_targets_quick" if args.quick else "speed_targets")
    try:
        data = load_data(args.dataset or ("digits" if args.quick else "fashion-mnist"), dtype=DTYPE)
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    settings = dict(dataset=data.name, epochs=epochs, threads=args.threads, max_epoch_seconds=max_epoch_seconds,
                    quick=args.quick, batch_sizes=list(BATCH_SIZES))
    info = machine_info(command=" ".join(["python", "benchmarks/speed_targets.py", *(argv or sys.argv[1:])]))
    info.update(run="speed_targets", settings=settings, floor={}, threads={}, core_scaling={},
                core_probe_compile_seconds=cores.compile_probe())
    epoch_rows, floors = [], []
    for threads in sorted(set(args.threads) | {1}):  # the one-thread floor is a target's reference
        with mbtrain.threads.limit(threads):
            info["threads"][str(threads)] = mbtrain.get_num_threads()._asdict()
            floor, floor_steal = measured_floor(args.quick)
            if threads > 1:
                info["core_scaling"][str(threads)] = cores.measure_core_scaling(passes=200 if args.quick else 2000)
            rows = []
            if threads in args.threads:
                for network in NETWORKS:
                    rows += measure_network(network, data, threads, floor, epochs, max_epoch_seconds)
                after, after_steal = measured_floor(args.quick)
                floor, floor_steal = faster_floor(floor, after), max(floor_steal, after_steal)
                rows = [with_floor(row, floor, data) for row in rows]
            info["floor"][str(threads)] = floor.describe()
            floors += [floor_rows(floor, network, data, threads, floor_steal) for network in NETWORKS]
            epoch_rows += rows
    epochs_frame, floors_frame = pd.DataFrame(epoch_rows), pd.DataFrame(floors)
    targets = evaluate(epochs_frame, floors_frame)
    out.mkdir(parents=True, exist_ok=True)
    epochs_frame.to_csv(out / "epochs.csv", index=False)
    floors_frame.to_csv(out / "floors.csv", index=False)
    targets.to_csv(out / "targets.csv", index=False)
    write_machine(out / "machine.json", info)
    (out / "report.md").write_text(report(data, info, epochs_frame, floors_frame, targets, settings), encoding="utf-8")
    print("\n".join(machine_lines(info) + steal_lines(epochs_frame, floors_frame)) + "\n")
    ratios = [c for c in ("measured", "fastest_epochs") if c in targets]  # no fastest_epochs: no arm timed
    print(markdown_table(targets.assign(**{c: [fmt(v) for v in targets[c]] for c in ratios})))
    print(f"written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
