"""scipy's full-batch optimizers on the flat parameter vector, against mini-batch SGD.

The 8x8 digits (1,497 training, 300 test images), the [64, 100, 10] network
with the cross-entropy cost, scaled initialization and lmbda 0.5, float64: the
setup learners use with this data. Every method starts from the same
parameters and minimizes the same loss with the same gradient
(:func:`mbtrain.optimize.objective`, numba backend); one row of mini-batch SGD
(``Network.fit``) shows where the book's method gets in comparable work.

Why the optimizers differ
-------------------------
- **L-BFGS-B** keeps the last 10 steps and gradient changes and applies an
  approximate inverse Hessian in O(10 n) per iteration; its line search almost
  always accepts the first step, so it costs about one gradient per iteration,
  and the curvature model makes those iterations count: usually the lowest
  loss for a given number of gradients.
- **CG** (Polak-Ribiere nonlinear conjugate gradients) keeps no curvature
  model, only the previous direction; it needs a stricter line search (about
  two gradients per iteration) and loses conjugacy on a non-quadratic,
  ill-conditioned loss, so it needs more iterations for the same loss.
- **TNC** (truncated Newton) solves for a Newton step with an inner conjugate-
  gradient loop whose Hessian-vector products are finite differences of
  gradients: few outer iterations, each costing many gradients. scipy gives it
  no iteration limit, so it gets a budget of function evaluations
  (``maxfun``): the largest number any other method used.
- **BFGS** keeps a dense ``n x n`` inverse Hessian (n = 7,510 parameters:
  451 MB) and scipy updates it with two dense ``n x n`` matrix products per
  iteration, about 4 n^3 = 1.7 TFLOP: 30 to 40 s per iteration here on one
  thread, against 4 ms for a gradient. Its row runs
  ``--bfgs-maxiter`` iterations (2 by default, 0 skips it) to measure that cost;
  it is the right tool only for a few hundred parameters.

Writes benchmarks/results/scipy_methods.md::

    .venv/bin/python benchmarks/scipy_methods.py                  # maxiter 200
    .venv/bin/python benchmarks/scipy_methods.py --maxiter 50 --bfgs-maxiter 0
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
SIZES = [64, 100, 10]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--maxiter", type=int, default=200, help="iterations of L-BFGS-B and CG")
    parser.add_argument("--bfgs-maxiter", type=int, default=2, help="iterations of BFGS (0 skips it)")
    parser.add_argument("--lmbda", type=float, default=0.5)
    parser.add_argument("--sgd-epochs", type=int, default=30)
    parser.add_argument("--sgd-eta", type=float, default=0.5)
    parser.add_argument("--sgd-batch-size", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="numba and BLAS threads")
    parser.add_argument("--repeats", type=int, default=3, help="runs per method (BFGS: 1); the fastest is kept")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "scipy_methods.md")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import scipy

    import mbtrain
    from mbtrain import threads
    from mbtrain.optimize import fit_full_batch

    X_train, y_train, X_test, y_test = mbtrain.datasets.load("digits", dtype="float64")
    start_net = mbtrain.Network(SIZES, cost="cross_entropy", init="scaled", dtype="float64", seed=args.seed)
    initial_loss = start_net.loss(X_train, y_train, args.lmbda)
    plan = [("L-BFGS-B", args.maxiter, {}), ("CG", args.maxiter, {})]
    rows = []
    with threads.limit(args.threads) as counts:
        budget = 0
        for method, maxiter, options in plan + [("TNC", None, None)] + (
                [("BFGS", args.bfgs_maxiter, {})] if args.bfgs_maxiter > 0 else []):
            if method == "TNC":
                maxiter, options = budget, {"maxfun": budget}
            # Deterministic runs: repeats only filter out the noise of a shared machine (fastest kept).
            runs = []
            for _ in range(1 if method == "BFGS" else args.repeats):
                net = start_net.copy()
                start = time.perf_counter()
                history = fit_full_batch(net, X_train, y_train, method=method, maxiter=maxiter, lmbda=args.lmbda,
                                         **options)
                runs.append((time.perf_counter() - start - history.attrs["compile_seconds"], history, net))
            wall, history, net = min(runs, key=lambda run: run[1]["seconds"].sum())
            result = history.attrs["result"]
            budget = max(budget, int(result.nfev))
            rows.append({
                "method": method, "iterations": int(result.nit), "function evaluations": int(result.nfev),
                "optimizer seconds": float(history["seconds"].sum()), "wall seconds": wall,
                "seconds / evaluation": float(history["seconds"].sum()) / max(int(result.nfev), 1),
                "seconds / iteration": float(history["seconds"].sum()) / max(int(result.nit), 1),
                "loss": float(result.fun), "train accuracy": net.score(X_train, y_train),
                "test accuracy": net.score(X_test, y_test), "stopped because": str(result.message),
            })
            print(f"{method}: {rows[-1]}", file=sys.stderr)
        runs = []
        for _ in range(args.repeats):
            net = start_net.copy()
            start = time.perf_counter()
            history = net.fit(X_train, y_train, epochs=args.sgd_epochs, batch_size=args.sgd_batch_size,
                              eta=args.sgd_eta, lmbda=args.lmbda, monitor=False, progress=False)
            runs.append((time.perf_counter() - start - history.attrs["compile_seconds"], history, net))
        wall, history, net = min(runs, key=lambda run: run[1]["seconds"].sum())
        rows.append({
            "method": f"SGD (b={args.sgd_batch_size}, eta={args.sgd_eta})", "iterations": args.sgd_epochs,
            "function evaluations": args.sgd_epochs, "optimizer seconds": float(history["seconds"].sum()),
            "wall seconds": wall, "seconds / evaluation": float(history["seconds"].sum()) / args.sgd_epochs,
            "seconds / iteration": float(history["seconds"].sum()) / args.sgd_epochs,
            "loss": net.loss(X_train, y_train, args.lmbda), "train accuracy": net.score(X_train, y_train),
            "test accuracy": net.score(X_test, y_test), "stopped because": "epochs done",
        })

    columns = list(rows[0])
    header = "| " + " | ".join(columns) + " |\n|" + " --- |" + " ---: |" * (len(columns) - 2) + " --- |"

    def cell(value):
        if isinstance(value, float):
            return f"{value:.4f}" if abs(value) < 100 else f"{value:,.1f}"
        return str(value)

    table = "\n".join([header] + ["| " + " | ".join(cell(r[c]) for c in columns) + " |" for r in rows])
    command = "python benchmarks/scipy_methods.py " + " ".join(sys.argv[1:] if argv is None else argv)
    report = f"""# scipy optimizers on mbtrain's flat parameter vector

Command: `{command.strip()}`

Digits: {X_train.shape[0]} training and {X_test.shape[0]} test images; network {SIZES}
({start_net.n_params:,} parameters), cross-entropy, scaled init (seed {args.seed}), float64,
lmbda {args.lmbda}; loss at the start {initial_loss:.4f}. Gradient: numba backend.
Budgets: L-BFGS-B and CG {args.maxiter} iterations; TNC as many function evaluations as the
largest of those; BFGS {args.bfgs_maxiter} iterations (cost per iteration, see below).
SGD row: one "function evaluation" = one epoch (a full pass over the training rows, in mini-batches).
Threads: {counts.numba} numba, {counts.blas} BLAS. Times: the fastest of {args.repeats} identical runs
(BFGS: one run), on a machine shared with other jobs.
"optimizer seconds": time inside scipy and the objective, per-iteration monitoring excluded;
"wall seconds" includes that monitoring (a forward pass for the training accuracy per iteration).
"seconds / evaluation" is optimizer seconds per gradient evaluation, "seconds / iteration" per
iteration (for BFGS dominated by its dense update, not by the gradient).

{table}

Why they differ: see the docstring of benchmarks/scipy_methods.py (curvature memory, line-search
cost, inner Hessian-vector loops, and BFGS's dense O(n^3) update).

Machine: {platform.machine()}, Python {platform.python_version()}, numpy {np.__version__},
scipy {scipy.__version__}, mbtrain {mbtrain.__version__}.
"""
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report, encoding="utf-8")
    print(f"written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
