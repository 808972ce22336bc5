"""``mbtrain gradcheck``: check a backend's (or your own) backprop by central differences."""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import numpy as np

from . import _args

EXAMPLE = """example:
  mbtrain gradcheck --sizes 5,4,3 --cost cross_entropy
  mbtrain gradcheck --sizes 5,4,3 --cost quadratic --gradients my_backprop.py:gradients

--gradients names your own function (net, X, Y) -> (grad_weights, grad_biases),
as 'file.py:function' or 'module:function'; it must return the gradient of
net.loss(X, Y, lmbda), averaged over the rows."""


def register(subparsers) -> None:
    p = subparsers.add_parser("gradcheck", help="check backprop against central differences",
                              description=__doc__, epilog=EXAMPLE, formatter_class=_args.Formatter)
    p.add_argument("--sizes", type=_args.sizes, default=[5, 4, 3], help="layer widths")
    p.add_argument("--cost", default="quadratic", help="quadratic, cross_entropy or softmax")
    p.add_argument("--init", default="gaussian", help="gaussian or scaled")
    p.add_argument("--backend", default="numba", help="loop, numpy or numba")
    p.add_argument("--rows", type=_args.positive_int, default=8, help="rows of random data")
    p.add_argument("--lmbda", type=_args.nonnegative_float, default=0.0, help="L2 strength")
    p.add_argument("--seed", type=int, default=0, help="seed of the network and the data")
    p.add_argument("--tolerance", type=_args.positive_float, default=1e-6, help="largest error per entry")
    p.add_argument("--gradients", metavar="FILE.py:FUNC", help="your own backprop to check instead")
    p.set_defaults(func=run)


def load_callable(spec: str):
    """``'path/file.py:func'`` or ``'package.module:func'`` -> the function."""
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr:
        raise ValueError(f"--gradients: expected FILE.py:FUNCTION or MODULE:FUNCTION, got {spec!r}")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise ValueError(f"--gradients: no such file {target!r}")
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ValueError(f"--gradients: {target!r} has no function {attr!r}") from None


def run(args) -> int:
    from .. import Network, gradcheck

    try:
        net = Network(args.sizes, cost=args.cost, init=args.init, dtype="float64", seed=args.seed)
        rng = np.random.default_rng(args.seed + 1)
        X = rng.random((args.rows, args.sizes[0]))
        y = rng.integers(0, args.sizes[-1], size=args.rows)
        user = load_callable(args.gradients) if args.gradients else None
        result = gradcheck(net, X, y, lmbda=args.lmbda, gradients=user, backend=args.backend,
                           tolerance=args.tolerance)
    except (ValueError, TypeError) as exc:
        print(f"mbtrain gradcheck: error: {exc}", file=sys.stderr)
        return 2
    source = f"your gradients ({args.gradients})" if args.gradients else f"backend {args.backend!r}"
    print(f"gradcheck of {source}: sizes {args.sizes}, cost {net.cost.name}, {args.rows} rows, lmbda {args.lmbda}")
    print(result)
    return 0 if result.ok else 1
