"""Optimizer speed: numba SGD, momentum and Adam epochs against each other and against PyTorch CPU Adam.

The "Speed" targets of issue 12: on Fashion-MNIST (the shipped digits when it
is not on disk), a ``[784, 30, 10]`` float32 network, cross-entropy, batch 10,
per-epoch seconds from the history (``history["seconds"]``, ``monitor=False``,
the median of ``--epochs`` epochs after a warm-up epoch; JIT compiling is done
first and reported apart):

- numba momentum <= 1.3 x numba SGD;
- numba Adam <= 1.6 x numba SGD;
- PyTorch CPU Adam (same network, cost, batch size and shuffled batches; where
  torch is installed) >= 5 x numba Adam's seconds.

Everything runs on one thread (``mbtrain.threads.limit(1)``,
``torch.set_num_threads(1)``). Writes benchmarks/results/optimizer_speed.md.

    .venv/bin/python benchmarks/optimizer_speed.py               # the measurement
    .venv/bin/python benchmarks/optimizer_speed.py --quick       # a smoke run: 2,000 rows, 2 epochs
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info

import mbtrain
from mbtrain.bench.machine import cpu_model

RESULTS = Path(__file__).resolve().parent / "results"
SIZES = [784, 30, 10]
TARGETS = (("numba momentum / numba SGD", "momentum", "sgd", "<=", 1.3),
           ("numba Adam / numba SGD", "adam", "sgd", "<=", 1.6),
           ("torch Adam / numba Adam", "torch adam", "adam", ">=", 5.0))


def vector_isa() -> str:
    """The widest x86 vector ISA in /proc/cpuinfo's flags (what LLVM may compile the kernels for)."""
    try:
        flags = next((line.split(":", 1)[1].split() for line in open("/proc/cpuinfo", encoding="utf-8")
                      if line.startswith("flags")), [])
    except OSError:
        flags = []
    return "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "other (no AVX2)"


def blas_kernel() -> str:
    pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    return ", ".join(f"{p.get('internal_api')} {p.get('version')} ({p.get('architecture')})" for p in pools) or "none"


def load(rows):
    try:
        X, y, _, _ = mbtrain.datasets.load("fashion-mnist", download=False)
        name = "fashion-mnist"
    except (OSError, ValueError):
        X, y, _, _ = mbtrain.datasets.load("digits")
        name = "digits (Fashion-MNIST not on disk)"
    if rows:
        X, y = X[:rows], y[:rows]
    return name, X, y


def numba_seconds(X, y, optimizer, epochs, eta):
    """Per-epoch seconds of a numba fit: the history's ``seconds`` after one warm-up epoch."""
    net = mbtrain.Network([X.shape[1], *SIZES[1:]], cost="cross_entropy", dtype="float32", seed=0)
    net.fit(X, y, epochs=1, batch_size=10, eta=eta, optimizer=optimizer, monitor=False, seed=1)  # warm-up
    history = net.fit(X, y, epochs=epochs, batch_size=10, eta=eta, optimizer=optimizer, monitor=False, seed=2)
    return [float(s) for s in history["seconds"]]


def torch_adam_seconds(X, y, epochs, eta):
    """Per-epoch seconds of ``torch.optim.Adam`` on the same network and cost; None without torch."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(X.shape[1], SIZES[1]), torch.nn.Sigmoid(),
                                torch.nn.Linear(SIZES[1], SIZES[2]))
    optimizer = torch.optim.Adam(model.parameters(), lr=eta)
    loss_fn = torch.nn.BCEWithLogitsLoss(reduction="sum")  # mbtrain's cross-entropy: summed over outputs
    Xt = torch.from_numpy(np.ascontiguousarray(X))
    Yt = torch.nn.functional.one_hot(torch.from_numpy(y), SIZES[2]).float()
    rng = np.random.default_rng(0)
    seconds = []
    for epoch in range(epochs + 1):  # the first is a warm-up
        order = torch.from_numpy(rng.permutation(len(X)))
        start = time.perf_counter()
        for lo in range(0, len(X), 10):
            rows = order[lo:lo + 10]
            optimizer.zero_grad()
            loss = loss_fn(model(Xt[rows]), Yt[rows]) / len(rows)  # mean over the batch's rows
            loss.backward()
            optimizer.step()
        if epoch:
            seconds.append(time.perf_counter() - start)
    return seconds


def report(dataset, n_rows, epochs, medians, compile_seconds):
    lines = ["# Optimizer speed: numba SGD, momentum, Adam and PyTorch CPU Adam", "",
             f"Data: {dataset}, {n_rows:,} training rows; network {SIZES}, float32, cross-entropy, batch 10; "
             f"median of {epochs} epochs (history['seconds'], monitor=False) after a warm-up epoch; one thread.",
             f"CPU: {cpu_model()}; vector ISA: {vector_isa()}; BLAS: {blas_kernel()}; "
             f"numba compile (apart): {compile_seconds:.1f} s.", "",
             "| arm | seconds per epoch |", "|---|---|"]
    lines += [f"| {arm} | {'not installed' if s is None else f'{s:.4f}'} |" for arm, s in medians.items()]
    lines += ["", "| ratio | measured | target | |", "|---|---|---|---|"]
    for label, top, bottom, sign, target in TARGETS:
        if medians.get(top) is None or medians.get(bottom) is None:
            lines.append(f"| {label} | - | {sign} {target} | not measured |")
            continue
        ratio = medians[top] / medians[bottom]
        met = ratio <= target if sign == "<=" else ratio >= target
        lines.append(f"| {label} | {ratio:.2f} | {sign} {target} | {'met' if met else 'not met'} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per arm (after one warm-up)")
    parser.add_argument("--rows", type=int, default=None, help="use only the first ROWS training rows")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2,000 rows, 2 epochs")
    parser.add_argument("--out", type=Path, default=RESULTS / "optimizer_speed.md")
    args = parser.parse_args()
    epochs, rows = (2, 2000) if args.quick else (args.epochs, args.rows)
    dataset, X, y = load(rows)
    etas = {"sgd": 0.5, "momentum": 0.05, "adam": 0.001}
    with mbtrain.threads.limit(1):
        compile_seconds = mbtrain.backends.get_backend("numba").compile("float32", "cross_entropy")
        medians = {name: statistics.median(numba_seconds(X, y, name, epochs, eta)) for name, eta in etas.items()}
        torch_seconds = torch_adam_seconds(X, y, epochs, etas["adam"])
    medians["torch adam"] = None if torch_seconds is None else statistics.median(torch_seconds)
    text = report(dataset, len(X), epochs, medians, compile_seconds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text, end="")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
