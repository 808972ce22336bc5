"""scikit-learn's MLPClassifier against mbtrain's MBClassifier: same network, same data, same SGD.

Both arms train one sigmoid hidden layer with a softmax output and the
log-likelihood cost (``MLPClassifier(activation="logistic")`` always uses a
softmax output for several classes; ``MBClassifier(cost="softmax")``), by plain
mini-batch SGD: ``solver="sgd", momentum=0, learning_rate="constant"``, the same
learning rate, batch size, number of epochs and shuffling each epoch.
What differs, by design of each library:

- initialization: scikit-learn draws Glorot-uniform weights, mbtrain N(0, 1/n_in)
  (``init="scaled"``), so accuracies agree only up to seed-to-seed noise;
- L2: mbtrain decays by ``eta * lmbda / n`` per step (``n`` training rows, the
  book's rule); scikit-learn by ``lr * alpha / m`` (``m`` rows in the batch), so
  ``alpha = lmbda * batch_size / n`` gives the same decay;
- work per epoch beyond SGD: scikit-learn sums the mini-batch losses as it goes
  (``loss_curve_`` for free); MBClassifier runs one forward pass over the
  training set after each epoch for its ``loss_curve_`` (included in its time).

JIT compilation of mbtrain's kernels is done (or loaded from numba's cache)
before timing and reported apart. Both arms run under the same thread limit
(``mbtrain.threads.limit``: numba and BLAS), 1 by default, and are timed
``--repeats`` times, interleaved, in one process; the table shows medians and the
ratios of those medians. Writes benchmarks/results/sklearn_comparison.md.

    .venv/bin/python benchmarks/sklearn_comparison.py                         # digits
    .venv/bin/python benchmarks/sklearn_comparison.py --dataset fashion-mnist --epochs 5
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="digits", help="digits (default), fashion-mnist or mnist")
    parser.add_argument("--hidden", type=int, default=30, help="hidden layer width (default 30)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--eta", type=float, default=0.5, help="learning rate of both arms")
    parser.add_argument("--lmbda", type=float, default=0.0, help="mbtrain's L2 strength (alpha derived)")
    parser.add_argument("--dtypes", default="float64,float32", help="comma-separated")
    parser.add_argument("--threads", type=int, default=1, help="numba and BLAS threads for both arms")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "sklearn_comparison.md")
    return parser.parse_args(argv)


def arms(args, n_train):
    """``{name: (dtype, factory)}``: an unfitted estimator per arm."""
    from sklearn.neural_network import MLPClassifier

    from mbtrain.sklearn import MBClassifier

    alpha = args.lmbda * args.batch_size / n_train
    out = {}
    for dtype in args.dtypes.split(","):
        out[f"MLPClassifier {dtype}"] = (dtype, lambda: MLPClassifier(
            hidden_layer_sizes=(args.hidden,), activation="logistic", solver="sgd", momentum=0.0,
            nesterovs_momentum=False, learning_rate="constant", learning_rate_init=args.eta, alpha=alpha,
            batch_size=args.batch_size, max_iter=args.epochs, shuffle=True, tol=0.0,
            n_iter_no_change=args.epochs + 1, random_state=args.seed))
        out[f"MBClassifier {dtype}"] = (dtype, lambda dtype=dtype: MBClassifier(
            hidden_layer_sizes=(args.hidden,), cost="softmax", init="scaled", epochs=args.epochs,
            batch_size=args.batch_size, eta=args.eta, lmbda=args.lmbda, dtype=dtype, random_state=args.seed))
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    import sklearn
    from sklearn.exceptions import ConvergenceWarning

    import mbtrain
    from mbtrain import threads

    X_train, y_train, X_test, y_test = mbtrain.datasets.load(args.dataset, dtype="float64")
    data = {dt: (X_train.astype(dt), X_test.astype(dt)) for dt in args.dtypes.split(",")}
    compile_seconds = {dt: mbtrain.backends.get_backend("numba").compile(dt) for dt in data}
    candidates = arms(args, X_train.shape[0])
    times = {name: [] for name in candidates}
    accuracy = {}
    with threads.limit(args.threads) as counts, warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(args.repeats):
            for name, (dtype, make) in candidates.items():
                Xtr, Xte = data[dtype]
                estimator = make()
                start = time.perf_counter()
                estimator.fit(Xtr, y_train)
                times[name].append(time.perf_counter() - start)
                accuracy[name] = estimator.score(Xte, y_test)  # the same every repeat (fixed seed)
                assert estimator.n_iter_ == args.epochs, (name, estimator.n_iter_)

    rows = []
    for name, (dtype, _) in candidates.items():
        mlp = statistics.median(times[f"MLPClassifier {dtype}"])
        seconds = statistics.median(times[name])
        rows.append((name, seconds, args.epochs * X_train.shape[0] / seconds, accuracy[name],
                     mlp / seconds, accuracy[name] - accuracy[f"MLPClassifier {dtype}"]))
    header = ("| arm | fit seconds (median) | examples/s | test accuracy | speed-up vs MLPClassifier "
              "(same dtype) | accuracy - MLPClassifier's |\n| --- | ---: | ---: | ---: | ---: | ---: |")
    table = "\n".join([header] + [f"| {r[0]} | {r[1]:.3f} | {r[2]:,.0f} | {r[3]:.4f} | {r[4]:.2f}x | {r[5]:+.4f} |"
                                  for r in rows])
    command = "python benchmarks/sklearn_comparison.py " + " ".join(sys.argv[1:] if argv is None else argv)
    report = f"""# MBClassifier against scikit-learn's MLPClassifier

Command: `{command.strip()}`

Data: {args.dataset}, {X_train.shape[0]} training rows, {X_test.shape[0]} test rows, {X_train.shape[1]} features.
Network: [{X_train.shape[1]}, {args.hidden}, {len(np.unique(y_train))}], logistic hidden layer, softmax output
with log-likelihood. SGD: {args.epochs} epochs, batch size {args.batch_size}, learning rate {args.eta},
lmbda {args.lmbda} (alpha {args.lmbda * args.batch_size / X_train.shape[0]:g}), no momentum, seed {args.seed}.
Threads: {counts.numba} numba, {counts.blas} BLAS (both arms). Times: median of {args.repeats} fits, interleaved.
mbtrain kernel compile/load before timing (excluded): {", ".join(f"{k} {v:.2f} s" for k, v in compile_seconds.items())}.

{table}

Machine: {platform.machine()}, Python {platform.python_version()}, numpy {np.__version__},
scikit-learn {sklearn.__version__}, mbtrain {mbtrain.__version__}.
All fit times: {"; ".join(f"{k}: {', '.join(f'{t:.3f}' for t in v)}" for k, v in times.items())}.
"""
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report, encoding="utf-8")
    print(f"written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
