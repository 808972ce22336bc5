"""``mbtrain gradcheck``: check a backend's (or your own) backprop by central differences."""
from __future__ import annotations

import importlib
import importlib.util
import sys
import traceback
from pathlib import Path

import numpy as np

from .. import Network, gradcheck
from . import _args

DESCRIPTION = """Check a backend's backprop, or your own, against central differences of the
loss on random data, layer by layer (numbered from 1), with hints on what a
failure points to. Exits 0 when the check passes, 1 when it fails, 2 on an error."""

EXAMPLE = """example:
  mbtrain gradcheck --sizes 5,4,3 --cost cross_entropy
  mbtrain gradcheck --sizes 5,4,3 --cost quadratic --gradients my_backprop.py:gradients

--gradients names your own function (net, X, Y) -> (grad_weights, grad_biases),
as 'file.py:function' or 'module:function'; it must return the gradient of
net.loss(X, Y, lmbda), averaged over the rows. Layers are numbered from 1:
layer 1 is net.weights[0] (W1, into the first hidden layer). When your function
raises, its traceback (the frames of your file) is shown and the exit code is 2."""


def register(subparsers) -> None:
    p = subparsers.add_parser("gradcheck", help="check backprop against central differences",
                              description=DESCRIPTION, epilog=EXAMPLE, formatter_class=_args.Formatter)
    p.add_argument("--sizes", type=_args.sizes, default="5,4,3", help="layer widths, input first")
    p.add_argument("--cost", default="quadratic", help="quadratic, cross_entropy or softmax")
    p.add_argument("--init", default="gaussian", help="gaussian or scaled")
    p.add_argument("--backend", default="numba", help="loop, numpy or numba")
    p.add_argument("--rows", type=_args.positive_int, default=8, help="rows of random data")
    p.add_argument("--lmbda", type=_args.nonnegative_float, default=0.0, help="L2 strength")
    p.add_argument("--seed", type=int, default=0, help="seed of the network and the data")
    p.add_argument("--tolerance", type=_args.positive_float, default=1e-6, help="largest error per entry")
    p.add_argument("--gradients", metavar="FILE.py:FUNC", help="your own backprop to check instead")
    p.set_defaults(func=run)


class UserCodeError(Exception):
    """The user's gradient file or function raised; carries the original exception.

    ``str()`` is the one-line summary (what raised what, and where in their
    file); :meth:`user_traceback` the frames of their file and the message.
    """

    def __init__(self, what: str, exc: BaseException, filename: str | None):
        self.exc = exc
        self.filename = filename
        frames = self._frames()
        if isinstance(exc, SyntaxError) and exc.filename:
            where = f" at {exc.filename}, line {exc.lineno}"
        elif frames:
            where = f" at {frames[-1].filename}, line {frames[-1].lineno}, in {frames[-1].name}"
        else:
            where = f": {exc}"
        super().__init__(f"{what} raised {type(exc).__name__}{where}")

    def _frames(self):
        """The frames of the user's file; when none (a function defined in another module),
        those below mbtrain's own call, without Python's import machinery."""
        frames = traceback.extract_tb(self.exc.__traceback__)[1:]  # [0] is mbtrain's frame that called theirs
        mine = Path(self.filename).resolve() if self.filename else None
        theirs = [f for f in frames if mine is not None and Path(f.filename).resolve() == mine]
        return theirs or [f for f in frames if not f.filename.startswith("<frozen ")]

    def user_traceback(self) -> str:
        """The traceback of the original exception, only the frames of the user's code.

        The exception line (with the caret of a SyntaxError) always ends it.
        """
        frames = self._frames()
        lines = ["Traceback (your code, most recent call last):\n"] if frames else []
        lines += traceback.format_list(frames)
        lines += traceback.format_exception_only(type(self.exc), self.exc)
        return "".join(lines)


def load_callable(spec: str):
    """``'path/file.py:func'`` or ``'package.module:func'`` -> ``(function, file of its module)``.

    Raises :class:`UserCodeError` when importing the module raises.
    """
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr:
        raise ValueError(f"--gradients: expected FILE.py:FUNCTION or MODULE:FUNCTION, got {spec!r}")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise ValueError(f"--gradients: no such file {target!r}")
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(module_spec)
        filename = str(path)
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:
            raise UserCodeError(f"loading {target}", exc, filename) from exc
    else:
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as exc:
            if exc.name == target.partition(".")[0] or exc.name == target:
                raise ValueError(f"--gradients: no module named {target!r}") from None
            raise UserCodeError(f"importing {target}", exc, None) from exc
        except Exception as exc:
            raise UserCodeError(f"importing {target}", exc, None) from exc
        filename = getattr(module, "__file__", None)
    try:
        function = getattr(module, attr)
    except AttributeError:
        raise ValueError(f"--gradients: {target!r} has no function {attr!r}") from None
    if not callable(function):
        raise ValueError(f"--gradients: {target}:{attr} is not a function")
    return function, filename


def _guarded(function, spec: str, filename):
    """``function``, with whatever it raises wrapped in :class:`UserCodeError`."""

    def call(net, X, Y):
        try:
            return function(net, X, Y)
        except Exception as exc:
            raise UserCodeError(f"your gradients function {spec}", exc, filename) from exc

    return call


def run(args) -> int:
    try:
        net = Network(args.sizes, cost=args.cost, init=args.init, dtype="float64", seed=args.seed)
        rng = np.random.default_rng(args.seed + 1)
        X = rng.random((args.rows, args.sizes[0]))
        y = rng.integers(0, args.sizes[-1], size=args.rows)
        user = None
        if args.gradients:
            function, filename = load_callable(args.gradients)
            user = _guarded(function, args.gradients, filename)
        result = gradcheck(net, X, y, lmbda=args.lmbda, gradients=user, backend=args.backend,
                           tolerance=args.tolerance)
    except UserCodeError as exc:
        # their code is what they are debugging: the one-line error, then where in their file
        print(f"mbtrain gradcheck: error: {exc}", file=sys.stderr)
        print(exc.user_traceback(), end="", file=sys.stderr)
        return 2
    except (ValueError, TypeError) as exc:
        print(f"mbtrain gradcheck: error: {exc}", file=sys.stderr)
        return 2
    source = f"your gradients ({args.gradients})" if args.gradients else f"backend {args.backend!r}"
    print(f"gradcheck of {source}: sizes {args.sizes}, cost {net.cost.name}, {args.rows} rows, lmbda {args.lmbda}")
    print(result)
    return 0 if result.ok else 1
