"""mbtrain: a fully vectorized mini-batch trainer for sigmoid MLPs.

Public API::

    net = mbtrain.Network([784, 30, 10], cost="quadratic", dtype="float32", seed=0)
    history = net.fit(X, y, epochs=10, batch_size=10, eta=3.0)          # optimizer="adam", schedule="book" ...
    mbtrain.gradcheck(net, X[:8], y[:8]).table
"""
from . import datasets, optim, schedules, threads
from ._version import __version__
from .backends import BACKENDS, DEFAULT_BACKEND
from .callbacks import EarlyStopping
from .costs import COSTS, Cost, register_cost
from .gradcheck import GradcheckResult, gradcheck
from .network import Network, load
from .optimize import loss_and_grad
from .serialization import ModelFormatError
from .threads import get_num_threads, set_num_threads
from .training import TrainingDiverged, TrainingInterrupted

__all__ = [
    "BACKENDS", "COSTS", "Cost", "DEFAULT_BACKEND", "EarlyStopping", "GradcheckResult",
    "ModelFormatError", "Network", "TrainingDiverged", "TrainingInterrupted", "gradcheck", "load",
    "datasets", "get_num_threads", "loss_and_grad", "optim", "register_cost", "schedules", "set_num_threads",
    "threads",
    "__version__",
]
