"""Benchmark arms: the ways of running one training epoch that ``mbtrain bench`` compares.

An arm is registered under a name in :data:`ARMS` and, for one network, data
set and optimizer, hands out a *runner* that owns its own copy of the
parameters and of the optimizer's state::

    arm = get_arm("numba")
    runner = arm.runner(net, X, Y, optimizer)   # copies net's parameters, casts data once
    runner.epoch(order, batch_size, eta, lmbda, n)
    runner.params()                     # flat vector in mbtrain's layout
    runner.reset()                      # back to the weights it started from, and a fresh state

``X`` is ``(n_samples, n_features)`` in the network's dtype and ``Y`` the
one-hot target matrix ``(n_samples, n_classes)``; ``order`` is an int64 array
of row indices; ``optimizer`` an :class:`mbtrain.optim.Optimizer`. Its step
uses the gradient of the loss with the book's L2 term ``(lmbda/n) W`` on the
weights (biases not decayed); for SGD that is the book's rule
``w <- (1 - eta*lmbda/n) w - (eta/m) sum grad C_x``.

Kinds of arm:

- ``"reference"``: the per-example ``loop`` backend, the oracle every other arm
  is checked against;
- ``"backend"``: mbtrain's own matrix backends (``numpy``, ``numba``);
- ``"peer"``: other libraries running the same network from the same weights
  and batch order (``torch``; ``sklearn``, which trains its own loss).

A test (or a user) can add an arm with :func:`register_arm`; the harness checks
every arm against the reference before timing it, so a wrong arm is reported,
not timed.
"""
from __future__ import annotations

import contextlib
import importlib.util
import math
import time

import numba
import numpy as np

from ..backends import get_backend
from ..optim import ADAM_KIND, MOMENTUM_KIND, NESTEROV_KIND, Adam

ARMS: dict[str, "Arm"] = {}


def register_arm(arm: "Arm") -> "Arm":
    """Add ``arm`` to :data:`ARMS` under ``arm.name`` (replacing one of that name)."""
    ARMS[arm.name] = arm
    return arm


def get_arm(name: str) -> "Arm":
    """The arm registered under ``name``."""
    try:
        return ARMS[name]
    except (KeyError, TypeError):
        raise ValueError(f"arms: unknown arm {name!r}; choose from {sorted(ARMS)}") from None


class Arm:
    """Interface of an arm; subclasses set the attributes and implement :meth:`runner`.

    Attributes
    ----------
    name : str
    kind : {"reference", "backend", "peer"}
    description : str
        One line for the report (what it is, what loss it trains).
    """

    name = ""
    kind = "backend"
    description = ""

    def unavailable_reason(self, net) -> str | None:
        """Why this arm cannot run ``net`` here (library missing, cost unsupported), or None."""
        return None

    def loss_name(self, net) -> str:
        """The loss this arm trains for ``net`` (``net.cost.name`` unless it is a peer with its own)."""
        return net.cost.name

    def update_rule(self, optimizer):
        """The rule this arm runs for ``optimizer``, as an :class:`mbtrain.optim.Optimizer` the reference can run.

        ``optimizer`` itself unless the arm is a peer whose library defines the
        rule a little differently (scikit-learn's Adam); the correctness check
        runs the reference with this rule, as it runs it with :meth:`loss_name`.
        """
        return optimizer

    def compile(self, net, batch_sizes=None, optimizer=None) -> float:
        """Compile or load whatever the arm needs for ``net``'s dtype and cost at ``batch_sizes`` with
        ``optimizer`` (None: everything it may use); returns seconds."""
        return 0.0

    def runner(self, net, X, Y, optimizer):
        """A runner of ``optimizer`` on ``net`` from its weights, over the rows ``X`` with targets ``Y``."""
        raise NotImplementedError

    def set_threads(self, n_threads: int):
        """Set the arm's own thread pool to ``n_threads``; returns a function that restores it."""
        return lambda: None

    def timing_context(self):
        """A context entered around this arm's timed epochs (none by default)."""
        return contextlib.nullcontext()

    def thread_info(self) -> dict:
        """Thread counts the arm runs with, for the report."""
        return {}


class BackendRunner:
    """Runner for an mbtrain backend: works on a copy of the network, through the backend protocol.

    Every optimizer goes through :meth:`mbtrain.backends.Backend.optimizer_epoch`
    (which is ``sgd_epoch``, bit for bit, for SGD), as ``fit`` runs it; the
    state (None for SGD, which keeps none) lives here and is fresh after
    :meth:`reset`.
    """

    def __init__(self, backend, net, X, Y, optimizer):
        self.backend = backend
        self.net = net.copy()
        self.initial = net.params.copy()
        self.X = np.ascontiguousarray(X, dtype=net.dtype)
        self.Y = np.ascontiguousarray(Y, dtype=net.dtype)
        self.inputs = backend.epoch_inputs(self.net, self.X)  # as fit's epochs read them
        self.optimizer = optimizer
        self.state = self._fresh_state()

    def _fresh_state(self):
        if not self.optimizer.state_names:
            return None
        return self.optimizer.new_state(self.net.layout.size, self.net.dtype)

    def epoch(self, order, batch_size, eta, lmbda, n):
        bad = self.backend.optimizer_epoch(self.net, self.inputs, self.Y, order, batch_size, eta, lmbda, n,
                                           self.optimizer, self.state)
        if bad >= 0:
            raise FloatingPointError(f"{self.backend.name}: diverged in mini-batch {bad}")

    def params(self) -> np.ndarray:
        return self.net.params.copy()

    def reset(self) -> None:
        self.net.params[...] = self.initial
        self.state = self._fresh_state()


class BackendArm(Arm):
    """An mbtrain backend (``loop``, ``numpy``, ``numba``) as an arm; ``backend`` defaults to ``name``."""

    def __init__(self, name, kind="backend", description="", backend=None):
        self.name = name
        self.kind = kind
        self.description = description
        self.backend_name = name if backend is None else backend

    @property
    def backend(self):
        return get_backend(self.backend_name)

    def compile(self, net, batch_sizes=None, optimizer=None):
        """The backend's own compile step (the numba kernels for ``net``'s dtype and cost, at the run's batch
        sizes and optimizer; nothing elsewhere)."""
        return self.backend.compile(net.dtype.name, net.cost, batch_sizes=batch_sizes,
                                    optimizers=None if optimizer is None else (optimizer,))

    def runner(self, net, X, Y, optimizer):
        return BackendRunner(self.backend, net, X, Y, optimizer)

    def timing_context(self):
        """The backend's own training context, as ``fit`` uses (the numba backend keeps BLAS out of its
        way: the idle workers the other arms woke must not spin on numba's cores)."""
        return self.backend.training_context()


class NumbaArm(BackendArm):
    def __init__(self):
        super().__init__("numba", description="mbtrain's numba backend: one jitted call per epoch")

    def unavailable_reason(self, net):
        if net.cost.kernel_id is None:
            return f"no numba kernel for cost {net.cost.name!r}"
        return None

    def set_threads(self, n_threads):
        previous = numba.get_num_threads()
        numba.set_num_threads(min(n_threads, numba.config.NUMBA_NUM_THREADS))
        return lambda: numba.set_num_threads(previous)

    def thread_info(self):
        return {"numba_threads": numba.get_num_threads()}


# -- torch --------------------------------------------------------------------------


class TorchRunner:
    """The same network in PyTorch (CPU): autograd for the gradient, the matching ``torch.optim`` for the step.

    SGD is ``torch.optim.SGD``, momentum and Nesterov ``torch.optim.SGD(momentum=mu,
    nesterov=...)``, Adam ``torch.optim.Adam(betas, eps)``: the definitions of
    :mod:`mbtrain.optim`. The book's L2 term is ``weight_decay = lmbda / n`` on
    the weights only (torch adds it to the gradient, as mbtrain's ``g``
    includes it: for SGD ``w <- (1 - eta lmbda/n) w - eta g``); biases are in a
    parameter group without decay. The loss is the mean over the mini-batch,
    so ``eta * grad`` is the book's ``(eta/m) sum grad C_x``.
    """

    def __init__(self, net, X, Y, optimizer):
        import torch

        self.torch = torch
        self.net = net
        self.optimizer = optimizer
        self.dtype = torch.float32 if net.dtype == np.float32 else torch.float64
        self.initial = net.params.copy()
        self.X = torch.from_numpy(np.ascontiguousarray(X, dtype=net.dtype))
        self.Y = torch.from_numpy(np.ascontiguousarray(Y, dtype=net.dtype))
        self.weights = [torch.nn.Parameter(torch.from_numpy(w.copy())) for w in net.weights]
        self.biases = [torch.nn.Parameter(torch.from_numpy(b.copy())) for b in net.biases]
        self.cost = net.cost.name
        self._torch_optimizer = None  # built by the first epoch; its state lasts until reset()

    def _loss(self, A, Y):
        F = self.torch.nn.functional
        last = len(self.weights) - 1
        for l, (w, b) in enumerate(zip(self.weights, self.biases)):
            Z = F.linear(A, w, b)
            A = Z if l == last else self.torch.sigmoid(Z)
        if self.cost == "quadratic":
            out = self.torch.sigmoid(A)
            return 0.5 * ((out - Y) ** 2).sum(dim=1).mean()
        if self.cost == "cross_entropy":
            return F.binary_cross_entropy_with_logits(A, Y, reduction="none").sum(dim=1).mean()
        return -(Y * F.log_softmax(A, dim=1)).sum(dim=1).mean()

    def _step_rule(self, eta, lmbda, n):
        """The torch optimizer, built once; a later epoch with another eta or n changes its groups in place."""
        optim, rule = self.torch.optim, self.optimizer
        if self._torch_optimizer is None:
            groups = [{"params": self.weights, "weight_decay": lmbda / n},
                      {"params": self.biases, "weight_decay": 0.0}]
            if rule.kind_id == ADAM_KIND:
                self._torch_optimizer = optim.Adam(groups, lr=eta, betas=(rule.beta1, rule.beta2), eps=rule.eps)
            elif rule.kind_id in (MOMENTUM_KIND, NESTEROV_KIND):
                self._torch_optimizer = optim.SGD(groups, lr=eta, momentum=rule.mu,
                                                  nesterov=rule.kind_id == NESTEROV_KIND)
            else:
                self._torch_optimizer = optim.SGD(groups, lr=eta, momentum=0.0)
        weights, biases = self._torch_optimizer.param_groups
        weights["lr"] = biases["lr"] = eta
        weights["weight_decay"] = lmbda / n
        return self._torch_optimizer

    def epoch(self, order, batch_size, eta, lmbda, n):
        torch = self.torch
        optimizer = self._step_rule(eta, lmbda, n)
        order = torch.from_numpy(np.ascontiguousarray(order, dtype=np.int64))
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            optimizer.zero_grad(set_to_none=True)
            self._loss(self.X.index_select(0, rows), self.Y.index_select(0, rows)).backward()
            optimizer.step()

    def params(self):
        return self.net.layout.pack([w.detach().numpy() for w in self.weights],
                                    [b.detach().numpy() for b in self.biases], self.net.dtype)

    def reset(self):
        ws, bs = self.net.layout.views(self.initial)
        with self.torch.no_grad():
            for p, v in zip(self.weights + self.biases, ws + bs):
                p.copy_(self.torch.from_numpy(v))
        self._torch_optimizer = None  # a fresh state (velocity, moments, step count)


class TorchArm(Arm):
    name = "torch"
    kind = "peer"
    description = ("PyTorch CPU: autograd + the matching torch.optim (SGD, SGD with momentum or Nesterov, Adam; "
                   "weight decay lmbda/n on weights only), same cost")

    def unavailable_reason(self, net):
        if importlib.util.find_spec("torch") is None:
            return "PyTorch is not installed"
        if net.cost.name not in ("quadratic", "cross_entropy", "softmax"):
            return f"no PyTorch version of cost {net.cost.name!r}"
        return None

    def compile(self, net, batch_sizes=None, optimizer=None):
        start = time.perf_counter()
        import torch  # noqa: F401  (import time is torch's start-up cost)

        return time.perf_counter() - start

    def runner(self, net, X, Y, optimizer):
        return TorchRunner(net, X, Y, optimizer)

    def set_threads(self, n_threads):
        import torch

        previous = torch.get_num_threads()
        torch.set_num_threads(n_threads)
        return lambda: torch.set_num_threads(previous)

    def thread_info(self):
        import torch

        return {"torch_threads": torch.get_num_threads(), "torch_version": torch.__version__}


# -- scikit-learn ---------------------------------------------------------------------


class SklearnRunner:
    """``MLPClassifier(activation="logistic")`` with the optimizer's ``solver``, driven by ``partial_fit``.

    SGD is ``solver="sgd", momentum=0``; momentum and Nesterov ``solver="sgd"``
    with ``momentum=mu`` and ``nesterovs_momentum`` (scikit-learn's velocity is
    ``-eta`` times mbtrain's, the same steps at a constant eta); Adam
    ``solver="adam"`` with ``beta_1``, ``beta_2``, ``epsilon`` (see
    :class:`SklearnAdam`). scikit-learn trains log-loss with a softmax output
    (not ``net``'s cost), so it is a peer with its own loss: it is checked
    against the reference run with the ``softmax`` cost. Its coefficients are
    ``(n_in, n_out)``, the transpose of mbtrain's. Its L2 term is ``alpha / m``
    per mini-batch of ``m`` rows; ``alpha = lmbda * batch_size / n`` gives the
    book's ``lmbda / n`` on every full mini-batch. ``partial_fit`` with
    ``shuffle=False`` runs one epoch over the rows in the order given, so each
    epoch receives ``X[order]`` (the gather is part of the timed epoch, as in
    the other arms).
    """

    def __init__(self, net, X, Y, optimizer):
        from sklearn.neural_network import MLPClassifier

        self.net = net
        self.initial = net.params.copy()
        self.X = np.ascontiguousarray(X, dtype=net.dtype)
        self.labels = np.asarray(Y).argmax(axis=1)
        self.classes = np.arange(net.sizes[-1])
        self.adam = optimizer.kind_id == ADAM_KIND
        if self.adam:
            solver = dict(solver="adam", beta_1=optimizer.beta1, beta_2=optimizer.beta2, epsilon=optimizer.eps)
        else:
            momentum = optimizer.mu if optimizer.kind_id in (MOMENTUM_KIND, NESTEROV_KIND) else 0.0
            solver = dict(solver="sgd", momentum=momentum, nesterovs_momentum=optimizer.kind_id == NESTEROV_KIND)
        self.model = MLPClassifier(
            hidden_layer_sizes=tuple(net.sizes[1:-1]), activation="logistic", learning_rate="constant",
            shuffle=False, alpha=0.0, batch_size=1, learning_rate_init=1.0, early_stopping=False, max_iter=1,
            n_iter_no_change=2 ** 30, **solver,
        )
        # One call to build coefs_ and the optimizer, then the shared initial weights and a fresh state.
        self.model.partial_fit(self.X[:1], self.labels[:1], classes=self.classes)
        self.reset()

    def epoch(self, order, batch_size, eta, lmbda, n):
        self.model.set_params(batch_size=batch_size, learning_rate_init=eta, alpha=lmbda * batch_size / n)
        # partial_fit reuses the optimizer it built: its learning rate is set there too
        if self.adam:
            self.model._optimizer.learning_rate_init = eta
        else:
            self.model._optimizer.learning_rate = eta
        self.model.partial_fit(self.X[order], self.labels[order])

    def params(self):
        return self.net.layout.pack([c.T for c in self.model.coefs_], self.model.intercepts_, self.net.dtype)

    def reset(self):
        ws, bs = self.net.layout.views(self.initial)
        self.model.coefs_ = [np.ascontiguousarray(w.T) for w in ws]
        self.model.intercepts_ = [b.copy() for b in bs]
        shapes = [p.shape for p in self.model.coefs_ + self.model.intercepts_]
        optimizer = self.model._optimizer  # a fresh state, in place: no step taken yet
        if self.adam:
            optimizer.t = 0
            optimizer.ms = [np.zeros(shape, dtype=self.net.dtype) for shape in shapes]
            optimizer.vs = [np.zeros(shape, dtype=self.net.dtype) for shape in shapes]
        else:
            optimizer.velocities = [np.zeros(shape, dtype=self.net.dtype) for shape in shapes]


class SklearnAdam(Adam):
    """scikit-learn's Adam, for the reference of the ``sklearn`` arm's check.

    scikit-learn adds ``eps`` to ``sqrt(s)`` before the second bias correction,
    ``w <- w - eta sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(s) + eps)``, where
    ``torch.optim.Adam`` (and :class:`mbtrain.optim.Adam`) add it after:
    their steps differ wherever ``|g|`` is near ``eps / sqrt(1 - b2^t)``.
    """

    def apply(self, state, params, grad, eta):
        t, m, s = self.moments(state, grad)
        step_size = eta * math.sqrt(1.0 - self.beta2 ** t) / (1.0 - self.beta1 ** t)
        params -= step_size * (m / (np.sqrt(s) + self.eps))


class SklearnArm(Arm):
    name = "sklearn"
    kind = "peer"
    description = ("scikit-learn MLPClassifier (logistic; solver sgd with the optimizer's momentum, 0 for plain "
                   "SGD, or adam): trains log-loss with a softmax output, its own loss; its Adam adds eps before "
                   "the bias correction")

    def unavailable_reason(self, net):
        if importlib.util.find_spec("sklearn") is None:
            return "scikit-learn is not installed"
        if net.sizes[-1] < 3:
            return "scikit-learn uses a single logistic output for two classes"
        return None

    def loss_name(self, net):
        return "softmax"  # multinomial log-loss with a softmax output

    def update_rule(self, optimizer):
        if optimizer.kind_id == ADAM_KIND:
            return SklearnAdam(optimizer.beta1, optimizer.beta2, optimizer.eps)
        return optimizer

    def runner(self, net, X, Y, optimizer):
        return SklearnRunner(net, X, Y, optimizer)


register_arm(BackendArm("loop", kind="reference",
                        description="the book's per-example backprop loop (the reference)"))
register_arm(BackendArm("numpy", description="mbtrain's matrix backprop in plain numpy (BLAS)"))
register_arm(NumbaArm())
register_arm(TorchArm())
register_arm(SklearnArm())
