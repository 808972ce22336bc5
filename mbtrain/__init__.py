"""mbtrain: a fully vectorized mini-batch trainer for sigmoid MLPs.

Public API::

    net = mbtrain.Network([784, 30, 10], cost="quadratic", dtype="float32", seed=0)
    history = net.fit(X, y, epochs=10, batch_size=10, eta=3.0)
    mbtrain.gradcheck(net, X[:8], y[:8]).table
"""
from . import datasets
from .backends import BACKENDS, DEFAULT_BACKEND
from .costs import COSTS, Cost, register_cost
from .gradcheck import GradcheckResult, gradcheck
from .network import Network
from .callbacks import EarlyStopping
from .serialization import ModelFormatError, load
from .training import TrainingDiverged, TrainingInterrupted

__version__ = "0.1.0"

__all__ = [
    "BACKENDS", "COSTS", "Cost", "DEFAULT_BACKEND", "EarlyStopping", "GradcheckResult",
    "ModelFormatError", "Network", "TrainingDiverged", "TrainingInterrupted", "gradcheck", "load",
    "datasets", "register_cost", "__version__",
]
