"""Kernel profile: one SGD epoch on Fashion-MNIST per backend, batch size and dtype.

Loads the IDX ``.gz`` files directly (a small inline reader, independent of
``mbtrain.datasets``), checks every arm against the float64 loop reference on a
small slice, compiles (reported apart), then times ``sgd_epoch`` calls in one
process and reports medians and ratios, plus a float32 GEMM-rate floor.

Usage::

    .venv/bin/python benchmarks/kernel_profile.py                       # default grid
    .venv/bin/python benchmarks/kernel_profile.py --sizes 784,30,10 --batches 1,10,100,1000 \
        --dtypes float32,float64 --arms numpy,numba,numba_plain --repeats 5

Arms: ``numba`` (the backend, fast kernels), ``numba_plain`` (the naive
reference kernels in :mod:`mbtrain.kernels`), ``numpy``, ``loop`` (batch 1
only by default, on a subset, scaled to the full epoch).
"""
from __future__ import annotations

import argparse
import gzip
import os
import struct
import time

import numpy as np

DATA_DIR = "/usr/share/datasets/fashion-mnist"


def read_idx(path):
    """An IDX file (``.gz``) as a numpy array of its stored shape (uint8 data)."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    dtype_code, ndim = raw[2], raw[3]  # magic: two zero bytes, type code, number of dimensions
    shape = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    assert dtype_code == 0x08, "only unsigned byte IDX files are expected"
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_fashion(dtype):
    images = read_idx(os.path.join(DATA_DIR, "train-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(DATA_DIR, "train-labels-idx1-ubyte.gz"))
    X = (images.reshape(images.shape[0], -1) / np.float32(255)).astype(dtype)
    Y = np.zeros((X.shape[0], 10), dtype=dtype)
    Y[np.arange(X.shape[0]), labels] = 1
    return X, Y


class PlainNumba:
    """The naive reference kernels (``mbtrain.kernels.sgd_epoch``) as a benchmark arm."""

    name = "numba_plain"

    def sgd_epoch(self, net, X, Y, order, batch_size, eta, lmbda, n):
        from mbtrain import kernels

        dt = net.dtype.type
        bs = min(batch_size, len(order))
        total = bs * sum(net.sizes)
        acts, deltas = np.empty(total, net.dtype), np.empty(total, net.dtype)
        return int(kernels.sgd_epoch(
            net.params, np.asarray(net.sizes, np.int64), X, Y, np.asarray(order, np.int64), bs,
            dt(eta), dt(1 - eta * (lmbda / n)), int(net.cost.kernel_id), acts, deltas))


def get_arm(name):
    if name == "numba_plain":
        return PlainNumba()
    from mbtrain.backends import get_backend

    return get_backend(name)


def gemm_floor(sizes, n_rows, repeats=5):
    """Seconds of ``flops(epoch)`` at the float32 GEMM rate of ``X @ W.T`` (BLAS, all cores)."""
    rng = np.random.default_rng(0)
    A = rng.random((8192, sizes[0]), dtype=np.float32)
    B = rng.random((sizes[0], 256), dtype=np.float32)
    np.dot(A, B)
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        np.dot(A, B)
        ts.append(time.perf_counter() - t)
    rate = 2 * A.shape[0] * A.shape[1] * B.shape[1] / np.median(ts)
    # forward + weight gradient of every layer, + hidden deltas of layers >= 1
    flops = 0
    for l, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        flops += 2 * 2 * n_in * n_out * n_rows + (2 * n_in * n_out * n_rows if l > 0 else 0)
    return flops, rate, flops / rate


def check_agreement(arms, sizes, cost):
    """Every arm agrees with the float64 loop after one epoch on a small slice."""
    from mbtrain import Network
    from mbtrain.backends import get_backend

    rng = np.random.default_rng(1)
    X = rng.random((200, sizes[0]))
    X[X < 0.5] = 0
    Y = np.eye(sizes[-1])[rng.integers(0, sizes[-1], 200)]
    order = rng.permutation(200)
    ref = Network(sizes, cost=cost, dtype="float64", seed=0)
    get_backend("loop").sgd_epoch(ref, X, Y, order, 10, 3.0, 0.5, 200)
    for name, arm in arms.items():
        net = Network(sizes, cost=cost, dtype="float64", seed=0)
        arm.sgd_epoch(net, X, Y, order, 10, 3.0, 0.5, 200)
        err = np.max(np.abs(net.params - ref.params) / (np.abs(ref.params) + 1e-300).clip(1e-3))
        status = "ok" if err < 1e-9 else "MISMATCH"
        print(f"  check {name:12s} max rel diff vs loop {err:.1e} {status}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="784,30,10")
    p.add_argument("--cost", default="quadratic")
    p.add_argument("--batches", default="1,10,100,1000")
    p.add_argument("--dtypes", default="float32,float64")
    p.add_argument("--arms", default="numpy,numba")
    p.add_argument("--loop-rows", type=int, default=2000, help="rows of the loop arm's (scaled) epoch")
    p.add_argument("--no-loop", action="store_true", help="skip the loop arm at batch 1")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--rows", type=int, default=None, help="use only the first ROWS training rows")
    p.add_argument("--eta", type=float, default=3.0)
    p.add_argument("--lmbda", type=float, default=0.0)
    args = p.parse_args(argv)

    from mbtrain import Network
    import numba

    sizes = [int(s) for s in args.sizes.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    arm_names = args.arms.split(",")
    arms = {name: get_arm(name) for name in arm_names}
    print(f"sizes={sizes} cost={args.cost} eta={args.eta} lmbda={args.lmbda} "
          f"numba threads={numba.get_num_threads()}")
    check_agreement(arms, sizes, args.cost)

    results = {}
    for dtype in args.dtypes.split(","):
        X, Y = load_fashion(dtype)
        if args.rows:
            X, Y = X[:args.rows], Y[:args.rows]
        n = X.shape[0]
        if dtype == args.dtypes.split(",")[0]:
            flops, rate, floor = gemm_floor(sizes, n)
            print(f"floor: {flops / 1e9:.2f} GFLOP/epoch at {rate / 1e9:.0f} GFLOP/s float32 GEMM "
                  f"= {floor:.4f} s; zero fraction of X {np.mean(X == 0):.2f}")
        rng = np.random.default_rng(0)
        for bs in batches:
            nets = {name: Network(sizes, cost=args.cost, dtype=dtype, seed=0) for name in arms}
            # compile / warm up (reported apart)
            for name, arm in arms.items():
                t = time.perf_counter()
                arm.sgd_epoch(nets[name], X[:64], Y[:64], np.arange(64), bs, args.eta, args.lmbda, n)
                results[(dtype, bs, name, "warm")] = time.perf_counter() - t
            times = {name: [] for name in arms}
            do_loop = bs == 1 and not args.no_loop
            if do_loop:
                times["loop"] = []
                loop_net = Network(sizes, cost=args.cost, dtype=dtype, seed=0)
            for r in range(args.repeats):
                order = rng.permutation(n)
                for name, arm in arms.items():  # interleaved, so noise hits every arm alike
                    t = time.perf_counter()
                    arm.sgd_epoch(nets[name], X, Y, order, bs, args.eta, args.lmbda, n)
                    times[name].append(time.perf_counter() - t)
                if do_loop and r < 3:
                    sub = order[:args.loop_rows]
                    t = time.perf_counter()
                    get_arm("loop").sgd_epoch(loop_net, X, Y, sub, bs, args.eta, args.lmbda, n)
                    times["loop"].append((time.perf_counter() - t) * n / len(sub))
            med = {name: float(np.median(ts)) for name, ts in times.items()}
            line = f"{dtype:8s} batch {bs:5d}: " + "  ".join(f"{k} {v:.4f}s" for k, v in med.items())
            if "numba" in med:
                others = [k for k in med if k != "numba"]
                line += "  | ratios " + " ".join(f"{k}/numba {med[k] / med['numba']:.1f}x" for k in others)
                line += f"  numba/floor {med['numba'] / floor:.2f}x"
            print(line, flush=True)
            for name, v in med.items():
                results[(dtype, bs, name)] = v
    return results


if __name__ == "__main__":
    main()
