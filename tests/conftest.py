import importlib.util
from pathlib import Path

import numpy as np
import pytest

import mbtrain

BACKEND_NAMES = ("loop", "numpy", "numba")
COST_NAMES = ("quadratic", "cross_entropy", "softmax")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def flat(grad_w, grad_b):
    """Concatenate per-layer gradients into one float64 vector."""
    return np.concatenate([g.ravel() for g in grad_w] + [g.ravel() for g in grad_b]).astype(np.float64)


def max_rel_diff(a, b):
    """``max|a - b| / max|a|``: relative to the scale of the whole vector."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    scale = np.max(np.abs(a))
    return float(np.max(np.abs(a - b)) / scale) if scale > 0 else float(np.max(np.abs(b)))


def random_problem(rng, sizes, rows, cost="quadratic", dtype="float64", seed=0, targets=False):
    net = mbtrain.Network(sizes, cost=cost, dtype=dtype, seed=seed)
    X = rng.random((rows, sizes[0]))
    if targets:
        Y = rng.random((rows, sizes[-1]))
        if cost == "softmax":
            Y /= Y.sum(axis=1, keepdims=True)
        return net, X, Y
    return net, X, rng.integers(0, sizes[-1], size=rows)


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def benchmark_script(name):
    """``benchmarks/<name>.py`` imported as a module (the scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
