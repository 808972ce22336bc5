"""Where a numba batch epoch's time goes: each layer kernel of a [n_in, hidden, k] epoch timed on its own.

Calls the kernels of :mod:`mbtrain.fast_layers` one batch at a time from
Python, in the order the epoch runs them, on one thread, and sums each
piece's seconds over the epoch (the best of ``--repeats`` epochs per piece):

- ``gather floats`` / ``gather bytes``: the batch's rows copied into the
  aligned work space from float rows, and decoded from their byte codes
  (what the epochs read for pixels scaled from bytes: ``epoch_inputs``), the
  bytes after the prefetch of the batch's labels, as the epochs do;
- ``forward 1``, ``sigmoid 1``, ``forward 2``, ``output 2`` (sigmoid or
  softmax): the forward pass; ``output delta``, ``hidden delta``: BP1 and
  BP2; ``update 2``, ``update 1``: the weight gradients and the SGD step.

Each call crosses from Python into the jitted code (about 1 us each, so about
0.5 ms per piece over 500 batches), which the fused epoch does not: the sum
is a little above ``net.fit``'s epoch. GFLOP/s is given for the two products
of the first layer. Usage::

    .venv/bin/python benchmarks/epoch_pieces.py                      # [784,30,10] quadratic, batch 100
    .venv/bin/python benchmarks/epoch_pieces.py --hidden 100 --cost cross_entropy --batch-size 200
    .venv/bin/python benchmarks/epoch_pieces.py --quick              # digits: a smoke run
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import mbtrain
from mbtrain import _kernel_api as api, fast_kernels as fk, fast_layers as fl
from mbtrain.datasets import load
from mbtrain.datasets._convert import scale_to_unit


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=30)
    parser.add_argument("--cost", choices=("quadratic", "cross_entropy", "softmax"), default="quadratic")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="the shipped digits, one repeat")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    X, y, _, _ = load("digits" if args.quick else "fashion-mnist", dtype="float32")
    X, y = X[:50_000], np.ascontiguousarray(y[:50_000], dtype=np.int64)
    scale = 16 if args.quick else 255
    codes = np.rint(X * scale).astype(np.uint8)
    assert np.array_equal(scale_to_unit(codes, scale, "float32"), X), "rows are not byte codes / scale"
    n, n_in, H, bs = X.shape[0], X.shape[1], args.hidden, args.batch_size
    sizes = [n_in, H, 10]
    net = mbtrain.Network(sizes, dtype="float32", seed=0, cost=args.cost)
    kn = api.Net(net.params, np.asarray(sizes, np.int64), net.cost.kernel_id, np.float32(1))
    work = api.new_work(sizes, bs, np.float32)
    order = np.random.default_rng(0).permutation(n)
    (W0, b0), (W1, b1) = fk.layer_views(net.params, kn.sizes, 0), fk.layer_views(net.params, kn.sizes, 1)
    one, beta, f32 = np.float32(1), np.float32(-1e-4), np.float32
    no_codes, no_floats = np.empty((0, n_in), np.uint8), X[:0]
    softmax = net.cost.kernel_id == api.SOFTMAX
    names = ["gather floats", "gather bytes", "forward 1", "sigmoid 1", "forward 2", "output 2", "output delta",
             "hidden delta", "update 2", "update 1"]
    best = dict.fromkeys(names, np.inf)
    with mbtrain.threads.limit(1):
        for _ in range(1 if args.quick else args.repeats):
            total = dict.fromkeys(names, 0.0)
            for k in range(n // bs):
                rows = order[k * bs:(k + 1) * bs]
                g = work.index[:bs]
                A1, A2 = (fk.work_view(work.acts, kn.sizes, bs, layer, bs) for layer in (1, 2))
                D1, D2 = (fk.work_view(work.deltas, kn.sizes, bs, layer, bs) for layer in (1, 2))
                steps = [
                    lambda: fk.gather_rows(work.inputs, X, no_codes, f32(1), rows, 0, bs),
                    lambda: (fk.prefetch_targets(y, rows, 0, bs),
                             fk.gather_rows(work.inputs, no_floats, codes, f32(scale), rows, 0, bs)),
                    lambda: fl.dense_forward_rows(A1, work.inputs, g, W0, b0, 0, H),
                    lambda: fl.sigmoid_rows(A1, one),
                    lambda: fl.dense_forward_rows(A2, A1, g, W1, b1, 0, 10),
                    lambda: fl.softmax_rows(A2) if softmax else fl.sigmoid_rows(A2, one),
                    lambda: fl.output_delta_rows(D2, A2, y, rows, net.cost.kernel_id, one),
                    lambda: fl.hidden_delta_rows(D1, D2, W1, A1),
                    lambda: fl.dense_update_rows(W1, b1, A1, g, D2, one, one, beta, one, 0, 10, False),
                    lambda: fl.dense_update_rows(W0, b0, work.inputs, g, D1, one, one, beta, one, 0, H, False),
                ]
                for name, step in zip(names, steps):
                    start = time.perf_counter()
                    step()
                    total[name] += time.perf_counter() - start
            best = {name: min(best[name], total[name]) for name in names}
    flops = 2.0 * (n // bs) * bs * n_in * H
    print(f"[{n_in},{H},10] {args.cost}, batch {bs}, {n // bs * bs} rows, float32, one thread "
          f"(best of {1 if args.quick else args.repeats} epochs per piece):")
    for name in names:
        rate = f"  {flops / best[name] / 1e9:6.1f} GFLOP/s" if name in ("forward 1", "update 1") else ""
        print(f"  {name:14s} {best[name] * 1e3:8.2f} ms{rate}")
    epoch = sum(best.values()) - best["gather floats"]  # the epoch reads bytes here, as fit does
    print(f"  {'sum (bytes)':14s} {epoch * 1e3:8.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
