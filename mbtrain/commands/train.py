"""``mbtrain train``: train a network on a data set and report test accuracy."""
from __future__ import annotations

import sys

import numpy as np

from . import _args

EXAMPLE = """example:
  mbtrain train --dataset synthetic --sizes 16,20,4 --epochs 5 --batch-size 10 --eta 3.0"""


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a network and report test accuracy",
                              description=__doc__, epilog=EXAMPLE, formatter_class=_args.Formatter)
    p.add_argument("--dataset", default="synthetic", help="synthetic (generated blobs)")
    p.add_argument("--sizes", type=_args.sizes, default=[16, 20, 4], help="layer widths")
    p.add_argument("--cost", default="quadratic", help="quadratic, cross_entropy or softmax")
    p.add_argument("--init", default="gaussian", help="gaussian or scaled")
    p.add_argument("--epochs", type=_args.positive_int, default=5)
    p.add_argument("--batch-size", type=_args.positive_int, default=10)
    p.add_argument("--eta", type=_args.positive_float, default=3.0, help="learning rate")
    p.add_argument("--lmbda", type=_args.nonnegative_float, default=0.0, help="L2 strength")
    p.add_argument("--backend", default="numba", help="loop, numpy or numba")
    p.add_argument("--dtype", default="float32", help="float32 or float64")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args) -> int:
    from .. import Network
    from ..synthetic import make_blobs

    if args.dataset != "synthetic":
        print(f"mbtrain train: error: --dataset: unknown data set {args.dataset!r}", file=sys.stderr)
        return 2
    X, y = make_blobs(n_samples=2500, n_features=args.sizes[0], n_classes=args.sizes[-1],
                      dtype=args.dtype, seed=args.seed)
    X_train, y_train, X_test, y_test = X[:2000], y[:2000], X[2000:], y[2000:]
    try:
        net = Network(args.sizes, cost=args.cost, init=args.init, dtype=args.dtype, seed=args.seed)
        history = net.fit(X_train, y_train, epochs=args.epochs, batch_size=args.batch_size, eta=args.eta,
                          lmbda=args.lmbda, backend=args.backend, validation_data=(X_test, y_test))
    except (ValueError, TypeError) as exc:
        print(f"mbtrain train: error: {exc}", file=sys.stderr)
        return 2
    with np.printoptions(precision=4):
        print(history.to_string(index=False))
    print(f"test accuracy {net.score(X_test, y_test):.4f} ({len(y_test)} rows, data set {args.dataset})")
    return 0
