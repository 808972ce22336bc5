"""Optimizers of mini-batch training: SGD, momentum, Nesterov momentum and Adam.

Definitions (those of ``torch.optim``, with the book's L2 term as weight decay
on the weights only). ``g`` is the gradient of :meth:`mbtrain.Network.loss`
over the mini-batch: the mean cost gradient plus ``(lmbda/n) W`` on the
weights, nothing on the biases; ``eta`` the learning rate::

    sgd       w <- w - eta g                                    (the book's rule)
    momentum  v <- mu v + g;  w <- w - eta v
    nesterov  v <- mu v + g;  w <- w - eta (g + mu v)
    adam      t <- t + 1
              m <- b1 m + (1 - b1) g;  s <- b2 s + (1 - b2) g^2
              w <- w - eta (m / (1 - b1^t)) / (sqrt(s / (1 - b2^t)) + eps)

Momentum at a constant eta is the book's chapter 3 ``v <- mu v - eta grad C``,
``w <- w + v`` with its ``v`` equal to ``-eta`` times this one.

An :class:`Optimizer` is its hyperparameters; what changes while training (the
velocity, Adam's moments and step count) is an :class:`OptimizerState` of flat
arrays in the parameter layout (:mod:`mbtrain.params`) and the network's
dtype, kept by the network (``net.optimizer_state``) so that training resumes
exactly, also from a saved file. :func:`apply_step` is the plain numpy
reference of one step; the backends compute the same (``kind_id`` tells a
fused kernel which rule to run).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import numpy as np

# ``Optimizer.kind_id`` of each rule: the kernels' constants, which never change
from ._kernel_api import ADAM_KIND, MOMENTUM_KIND, NESTEROV_KIND, SGD_KIND
from .params import zeros_aligned


def check_fraction(value, name: str) -> float:
    """A number in ``[0, 1)`` (a momentum or a decay rate); the error names ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: must be a number in [0, 1), got {value!r}")
    value = float(value)
    if not 0.0 <= value < 1.0:  # NaN fails too
        raise ValueError(f"{name}: must be in [0, 1), got {value!r}")
    return value


def check_epsilon(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: must be a number > 0, got {value!r}")
    value = float(value)
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name}: must be a finite number > 0, got {value!r}")
    return value


class Optimizer:
    """A rule of update from the mini-batch gradient; hyperparameters are attributes.

    Subclasses set ``name``, ``kind_id``, ``state_names`` (the arrays of their
    state) and implement :meth:`hyperparameters` and :meth:`apply`.
    """

    name: str = ""
    kind_id: int = -1
    state_names: tuple[str, ...] = ()

    def hyperparameters(self) -> dict:
        return {}

    def describe(self) -> dict:
        """``{"name": ..., **hyperparameters}``: JSON-ready, for the history's attrs and saved files."""
        return {"name": self.name, **self.hyperparameters()}

    def new_state(self, n_params: int, dtype) -> OptimizerState:
        """A state of zeros (no step taken yet) for ``n_params`` parameters of ``dtype``."""
        arrays = {key: zeros_aligned(int(n_params), dtype) for key in self.state_names}
        return OptimizerState(self.describe(), arrays, 0)

    def apply(self, state, params, grad, eta: float) -> None:
        raise NotImplementedError

    def __eq__(self, other) -> bool:
        return isinstance(other, Optimizer) and self.describe() == other.describe()

    def __hash__(self) -> int:
        return hash(label(self.describe()))

    def __repr__(self) -> str:
        return label(self.describe())


class SGD(Optimizer):
    """Plain mini-batch SGD, ``w <- w - eta g``: no state."""

    name, kind_id = "sgd", SGD_KIND

    def apply(self, state, params, grad, eta):
        params -= eta * grad


class Momentum(Optimizer):
    """Heavy-ball momentum ``v <- mu v + g``, ``w <- w - eta v``; with ``nesterov``, ``w <- w - eta (g + mu v)``.

    Parameters
    ----------
    mu : float in [0, 1), default 0.9
    nesterov : bool, default False
        Nesterov's momentum (then ``name`` is ``"nesterov"``, as :class:`Nesterov`).
    """

    state_names = ("velocity",)

    def __init__(self, mu=0.9, nesterov=False):
        self.mu = check_fraction(mu, "mu")
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov: must be True or False, got {nesterov!r}")
        self.nesterov = bool(nesterov)

    @property
    def name(self) -> str:
        return "nesterov" if self.nesterov else "momentum"

    @property
    def kind_id(self) -> int:
        return NESTEROV_KIND if self.nesterov else MOMENTUM_KIND

    def hyperparameters(self):
        return {"mu": self.mu}

    def apply(self, state, params, grad, eta):
        state.step += 1
        v = state.arrays["velocity"]
        v *= self.mu
        v += grad
        if self.nesterov:
            params -= eta * (grad + self.mu * v)
        else:
            params -= eta * v


class Nesterov(Momentum):
    """Nesterov's momentum: ``Momentum(mu, nesterov=True)``."""

    def __init__(self, mu=0.9):
        super().__init__(mu, nesterov=True)


class Adam(Optimizer):
    """Adam (Kingma and Ba 2015) with bias correction, as ``torch.optim.Adam``.

    Parameters
    ----------
    beta1, beta2 : float in [0, 1), default 0.9 and 0.999
        Decay rates of the first moment ``m`` and the second ``s``.
    eps : float > 0, default 1e-8
        Added to ``sqrt(s / (1 - beta2^t))``.
    """

    name, kind_id, state_names = "adam", ADAM_KIND, ("m", "s")

    def __init__(self, beta1=0.9, beta2=0.999, eps=1e-8):
        self.beta1 = check_fraction(beta1, "beta1")
        self.beta2 = check_fraction(beta2, "beta2")
        self.eps = check_epsilon(eps, "eps")

    def hyperparameters(self):
        return {"beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}

    def moments(self, state, grad):
        """Advance the step count and both moments in place; returns ``(t, m, s)``."""
        state.step += 1
        m, s = state.arrays["m"], state.arrays["s"]
        m *= self.beta1
        m += (1.0 - self.beta1) * grad
        s *= self.beta2
        s += (1.0 - self.beta2) * (grad * grad)
        return state.step, m, s

    def apply(self, state, params, grad, eta):
        t, m, s = self.moments(state, grad)
        # torch's order: the step size carries the first correction, the denominator the second
        step_size = eta / (1.0 - self.beta1 ** t)
        denominator = np.sqrt(s)
        denominator /= math.sqrt(1.0 - self.beta2 ** t)  # a Python float: float32 stays float32
        denominator += self.eps
        params -= step_size * (m / denominator)


#: The optimizers by name, each with its default hyperparameters.
OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "nesterov": Nesterov, "adam": Adam}


def get_optimizer(spec) -> Optimizer:
    """An :class:`Optimizer` from a name in :data:`OPTIMIZERS` (default hyperparameters) or as given."""
    if isinstance(spec, Optimizer):
        return spec
    if isinstance(spec, str) and spec in OPTIMIZERS:
        return OPTIMIZERS[spec]()
    raise ValueError(f"optimizer: unknown optimizer {spec!r}; choose one of {list(OPTIMIZERS)} or an "
                     "mbtrain.optim object such as mbtrain.optim.Adam(beta1=0.9)")


def from_description(description) -> Optimizer:
    """The optimizer an :meth:`Optimizer.describe` dict describes; checked (for loading files)."""
    if not isinstance(description, dict) or description.get("name") not in OPTIMIZERS:
        raise ValueError(f"not an optimizer description: {description!r}")
    hyper = {k: value for k, value in description.items() if k != "name"}
    optimizer = OPTIMIZERS[description["name"]](**hyper)  # unknown or bad values raise here
    return optimizer


def label(description: dict) -> str:
    """``"momentum(mu=0.9)"``: an optimizer description as text."""
    hyper = ", ".join(f"{key}={value!r}" for key, value in description.items() if key != "name")
    return f"{description.get('name')}({hyper})"


@dataclass
class OptimizerState:
    """What an optimizer carries from one step to the next.

    ``optimizer`` is the :meth:`Optimizer.describe` of the optimizer that made
    it; ``arrays`` its flat arrays (``"velocity"``; Adam's ``"m"`` and ``"s"``)
    in the parameter layout and the network's dtype; ``step`` the number of
    steps taken (Adam's ``t``).
    """

    optimizer: dict
    arrays: dict = field(default_factory=dict)
    step: int = 0

    @property
    def label(self) -> str:
        return label(self.optimizer)

    def is_for(self, optimizer: Optimizer) -> bool:
        """True when this state was made by ``optimizer`` (same rule, same hyperparameters)."""
        return self.optimizer == optimizer.describe()

    def copy(self) -> OptimizerState:
        return self.astype(None)

    def astype(self, dtype) -> OptimizerState:
        """A copy with the arrays cast to ``dtype`` (None: their own); the caller checks overflow."""
        with np.errstate(over="ignore"):
            arrays = {key: a.astype(a.dtype if dtype is None else dtype) for key, a in self.arrays.items()}
        return OptimizerState(dict(self.optimizer), arrays, int(self.step))

    def assign(self, other: OptimizerState) -> None:
        """Put ``other``'s values into this state's arrays, in place."""
        for key, a in self.arrays.items():
            a[...] = other.arrays[key]
        self.step = other.step

    def first_nonfinite(self):
        """``(name, index)`` of the first value that is NaN or inf, or None."""
        for key, a in self.arrays.items():
            bad = ~np.isfinite(a)
            if bad.any():
                return key, int(np.argmax(bad))
        return None

    def check(self, n_params: int, dtype, name: str = "optimizer_state") -> None:
        """``ValueError`` naming ``name`` unless this state fits ``n_params`` parameters of ``dtype``.

        The arrays must be exactly those of its optimizer, flat, of ``dtype``,
        finite (Adam's ``s`` also >= 0), and ``step`` a whole number >= 0.
        """
        try:
            expected = from_description(self.optimizer).state_names
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name}: not made by a known optimizer ({exc})") from None
        if sorted(self.arrays) != sorted(expected):
            raise ValueError(f"{name}: {self.label} keeps the arrays {list(expected)}, got {sorted(self.arrays)}")
        for key, a in self.arrays.items():
            if not isinstance(a, np.ndarray) or a.shape != (int(n_params),) or a.dtype != np.dtype(dtype):
                shown = (a.shape, a.dtype) if isinstance(a, np.ndarray) else type(a).__name__
                raise ValueError(f"{name}: {key!r} must be a flat {np.dtype(dtype).name} array of "
                                 f"{n_params} values (one per parameter), got {shown}")
        bad = self.first_nonfinite()
        if bad is not None:
            raise ValueError(f"{name}: {bad[0]}[{bad[1]}] is {float(self.arrays[bad[0]][bad[1]])!r}, not finite")
        if "s" in self.arrays and (self.arrays["s"] < 0).any():
            i = int(np.argmax(self.arrays["s"] < 0))
            raise ValueError(f"{name}: s[{i}] is {float(self.arrays['s'][i])!r}; Adam's second moment is >= 0")
        if isinstance(self.step, bool) or not isinstance(self.step, numbers.Integral) or self.step < 0:
            raise ValueError(f"{name}: step must be a whole number >= 0, got {self.step!r}")


def apply_step(optimizer: Optimizer, state, params, grad, eta: float) -> None:
    """One step of ``optimizer`` from the mini-batch gradient ``grad``: ``params`` and ``state`` in place.

    The plain numpy reference of the rules in this module's docstring; every
    operation stays in the arrays' dtype (float32 stays float32). ``state`` is
    None for SGD.
    """
    optimizer.apply(state, params, grad, eta)
