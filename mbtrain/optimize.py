"""Full-batch training with ``scipy.optimize.minimize`` on the flat parameter vector.

The network's parameters are one flat vector (:mod:`mbtrain.params`), so the
loss and its gradient are a plain function of ``theta`` that scipy's
quasi-Newton and conjugate-gradient methods can drive::

    fun = mbtrain.optimize.objective(net, X, y, lmbda=0.5)      # theta -> (loss, grad)
    result = scipy.optimize.minimize(fun, net.get_params(), jac=True, method="L-BFGS-B")
    net.set_params(result.x)

or, with per-iteration history, in one call::

    history = net.fit_full_batch(X, y, method="L-BFGS-B", maxiter=200, lmbda=0.5)
    history.attrs["result"]                                       # scipy's OptimizeResult

Shapes: ``X`` ``(n, n_0)``; ``y`` int labels ``(n,)`` or targets ``(n, n_L)``;
``theta`` and the gradient ``(n_params,)`` float64, in the layout of
:class:`mbtrain.params.ParameterLayout`. The loss is :meth:`Network.loss`: the
mean cost over the ``n`` rows plus ``lmbda / (2 n) * sum ||W||^2``.

scipy is an optional extra (``pip install "mbtrain[scipy]"``); only
:func:`fit_full_batch` needs it.
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd

from . import _validation as v
from .activations import sigmoid, softmax
from .backends import DEFAULT_BACKEND, get_backend

METHODS = ("L-BFGS-B", "TNC", "BFGS", "CG")

__all__ = ["METHODS", "Objective", "fit_full_batch", "loss_and_grad", "objective"]


def _require_scipy():
    try:
        import scipy.optimize
    except ImportError as exc:
        raise ImportError(
            "mbtrain.optimize.fit_full_batch needs scipy, an optional extra of mbtrain: "
            "pip install \"mbtrain[scipy]\" (or pip install scipy)"
        ) from exc
    return scipy.optimize


def _check_method(method) -> str:
    by_name = {m.lower(): m for m in METHODS}
    if not isinstance(method, str) or method.lower() not in by_name:
        raise ValueError(f"method: unknown method {method!r}; choose one of {list(METHODS)}")
    return by_name[method.lower()]


class Objective:
    """The loss and its gradient as a function of the flat parameter vector.

    ``X`` and ``y`` are checked and cast to the network's dtype once, here;
    each call only copies ``theta`` into the network and runs one batched
    forward/backward pass of the chosen backend (with ``"numba"``, the loss
    reuses that pass's activations; other backends add a forward pass).

    Parameters
    ----------
    net : Network
        Evaluated in place: each call *sets* ``net``'s parameters to ``theta``.
    X : array ``(n, n_0)``
    Y : int labels ``(n,)`` or target matrix ``(n, n_L)``
    lmbda : float >= 0
        L2 strength; the penalty is ``lmbda / (2 n) * sum ||W||^2``.
    backend : {"numba", "numpy", "loop"}
        Computes the gradient (``"numba"``, the fast batched path, by default).

    Attributes
    ----------
    n_calls : int
        Evaluations so far (scipy's ``nfev`` counts the same thing).
    last_theta, last_loss, last_grad
        The most recent evaluation (float64 copies), so a per-iteration callback
        can reuse it instead of evaluating again.
    """

    def __init__(self, net, X, Y, lmbda=0.0, backend=DEFAULT_BACKEND):
        self.net = net
        self._backend = get_backend(backend)
        self.X = np.ascontiguousarray(net._check_X(X))
        self.Y = np.ascontiguousarray(net._check_targets(self.X, Y, name="Y"))
        self.lmbda = v.check_nonnegative_float(lmbda, "lmbda")
        self.n = self.X.shape[0]
        self.n_calls = 0
        self.last_theta = self.last_loss = self.last_grad = None
        self._fused = self._backend.name == "numba" and net.cost.kernel_id is not None
        if self._fused:
            # Work space of the numba kernel, allocated once: every layer's
            # activations for all n rows, one layer after the other.
            self._sizes = np.asarray(net.sizes, dtype=np.int64)
            self._acts = np.empty(self.n * sum(net.sizes), dtype=net.dtype)
            self._deltas = np.empty_like(self._acts)
            self._grad = np.empty_like(net.params)

    def _penultimate(self) -> np.ndarray:
        """The last hidden layer's activations ``(n, sizes[-2])`` left in the kernel's work space."""
        sizes = self.net.sizes
        start = self.n * sum(sizes[:-2])
        return self._acts[start:start + self.n * sizes[-2]].reshape(self.n, sizes[-2])

    def loss_and_grad(self):
        """``(loss, grad)`` at the network's current parameters; grad is float64."""
        net = self.net
        with np.errstate(over="ignore", invalid="ignore"):
            if self._fused:
                # One numba forward/backward pass; the loss reuses its hidden
                # activations and recomputes only the output layer's z (the
                # cross-entropy and softmax costs need z, not a, to stay exact
                # for saturated outputs). Measured on [64, 100, 10] with 1,497
                # rows: about half the time of a call with a separate BLAS
                # forward pass for the loss (3.8 ms against 6.7 ms).
                from . import kernels

                kernels.loss_gradient(self._grad, net.params, self._sizes, self.X, self.Y,
                                      int(net.cost.kernel_id), net.dtype.type(self.lmbda / self.n),
                                      self._acts, self._deltas)
                grad = self._grad
                z = self._penultimate() @ net.weights[-1].T + net.biases[-1]
                a = softmax(z) if net.cost.output_activation == "softmax" else sigmoid(z)
            else:
                grad = self._backend.loss_gradient(net, self.X, self.Y, self.lmbda, self.n)
                z, a = net._feedforward(self.X)
            loss = float(np.mean(net.cost.fn(z, a, self.Y), dtype=np.float64))
        if self.lmbda:
            l2 = sum(float(np.dot(w.ravel(), w.ravel())) for w in net.weights)
            loss += self.lmbda / (2 * self.n) * l2
        return loss, grad.astype(np.float64)

    def __call__(self, theta):
        """``(loss, grad)`` at ``theta`` (shape ``(n_params,)``), as ``minimize(jac=True)`` wants."""
        theta = np.asarray(theta)
        if theta.shape != self.net.params.shape:
            raise ValueError(f"theta: expected a flat vector of {self.net.params.size} parameters "
                             f"for sizes {list(self.net.sizes)}, got shape {theta.shape}")
        self.net.params[...] = theta
        loss, grad = self.loss_and_grad()
        self.n_calls += 1
        self.last_theta = np.array(theta, dtype=np.float64)
        self.last_loss, self.last_grad = loss, grad
        return loss, grad


def objective(net, X, Y, lmbda=0.0, backend=DEFAULT_BACKEND) -> Objective:
    """``theta -> (loss, grad)`` for ``scipy.optimize.minimize(fun, theta0, jac=True)``.

    ``X`` and ``Y`` are validated and cast once; see :class:`Objective`. Each
    call sets ``net``'s parameters to ``theta``. The gradient is float64 whatever
    the network's dtype; with a float32 network the loss is only accurate to
    about 7 digits, which line searches notice, so optimize a float64 network
    (:func:`fit_full_batch` does that for you).
    """
    return Objective(net, X, Y, lmbda=lmbda, backend=backend)


def loss_and_grad(net, X, Y, lmbda=0.0, backend=DEFAULT_BACKEND):
    """The loss and its gradient at ``net``'s current parameters.

    Returns
    -------
    loss : float
        :meth:`Network.loss` ``(X, Y, lmbda)``.
    grad : ndarray ``(n_params,)`` float64
        Its gradient in the flat layout of ``net.params`` (the concatenation of
        :meth:`Network.gradients`' layers).

    For repeated calls (an optimizer), use :func:`objective`, which checks
    ``X`` and ``Y`` once instead of on every call.
    """
    return Objective(net, X, Y, lmbda=lmbda, backend=backend).loss_and_grad()


def fit_full_batch(net, X, y, method="L-BFGS-B", maxiter=200, lmbda=0.0, validation_data=None,
                   backend=DEFAULT_BACKEND, tol=None, **options):
    """Train ``net`` on the whole training set with ``scipy.optimize.minimize``.

    Parameters
    ----------
    net : Network
        Updated in place with the optimizer's final parameters (``result.x``;
        every method here only accepts steps that lower the loss, so that is
        also the lowest loss it saw). The optimization itself runs in float64
        on a copy whatever ``net.dtype`` is: a float32 loss is too coarse for
        line searches. The result is cast back to ``net.dtype``.
    X : array ``(n, n_0)``
    y : int labels ``(n,)`` or target matrix ``(n, n_L)``
    method : {"L-BFGS-B", "TNC", "BFGS", "CG"}
        Case-insensitive. BFGS keeps a dense ``n_params x n_params`` inverse
        Hessian (450 MB for the 7,510 parameters of ``[64, 100, 10]``); the
        others need O(n_params) memory.
    maxiter : int >= 1
        Iterations for L-BFGS-B, BFGS and CG. TNC has no iteration limit in
        scipy; for it ``maxiter`` caps function evaluations (its ``maxfun``)
        unless ``options`` gives ``maxfun``.
    lmbda : float >= 0
        L2 strength, as in :meth:`Network.loss` with ``n`` = rows of ``X``.
    validation_data : (X_val, y_val) or None
        Adds ``val_loss`` and ``val_accuracy`` to each history row.
    backend : {"numba", "numpy", "loop"}
        Computes the gradient.
    tol : float or None
        Passed to ``minimize``.
    **options
        Passed to ``minimize`` as ``options`` (e.g. ``gtol``, ``maxfun``, ``disp``).

    Returns
    -------
    pandas.DataFrame
        One row per iteration, with row 0 for the starting point: ``iteration``,
        ``loss``, ``train_accuracy``, ``grad_norm`` (Euclidean norm of the full
        gradient), ``function_evaluations`` (cumulative), ``seconds`` (optimizer
        time of that iteration, monitoring excluded), and ``val_loss``,
        ``val_accuracy`` with validation data. ``attrs``: ``"result"`` (scipy's
        ``OptimizeResult``: ``x``, ``fun``, ``nit``, ``nfev``, ``success``,
        ``message``), ``"method"``, ``"backend"``, ``"compile_seconds"``.
        ``net.history`` (the SGD history) is left alone.

    Raises
    ------
    KeyboardInterrupt
        Ctrl-C; ``net`` keeps the parameters of the last completed iteration
        (also after any other exception raised during the optimization).
    ImportError
        scipy is not installed (the message names the extra).
    ValueError
        Unknown ``method``, or ``X``/``y`` of the wrong shape (the message names
        the argument and row).
    """
    sopt = _require_scipy()
    method = _check_method(method)
    maxiter = v.check_positive_int(maxiter, "maxiter")
    impl = get_backend(backend)
    work = net if net.dtype == np.float64 else net.astype("float64")
    fun = Objective(work, X, y, lmbda=lmbda, backend=backend)
    labels = fun.Y.argmax(axis=1)
    validation = work._check_validation(validation_data)
    options = dict(options)
    if method == "TNC":
        options.setdefault("maxfun", maxiter)
    else:
        options["maxiter"] = maxiter

    compile_seconds = 0.0
    if impl.name == "numba":
        from .backends.numba_matrix import compile_kernels

        compile_seconds = compile_kernels("float64")
    theta0 = work.get_params()
    rows = []
    clock = {"optimizer": 0.0, "since": 0.0}
    recorded = {"theta": theta0}

    def record(theta, iteration):
        if fun.last_theta is not None and np.array_equal(theta, fun.last_theta):
            loss, grad = fun.last_loss, fun.last_grad
        else:  # not counted as a function evaluation of the optimizer
            work.params[...] = theta
            loss, grad = fun.loss_and_grad()
        work.params[...] = theta
        with np.errstate(over="ignore", invalid="ignore"):
            accuracy = float(np.mean(work._feedforward(fun.X)[1].argmax(axis=1) == labels))
        row = {"iteration": iteration, "loss": loss, "train_accuracy": accuracy,
               "grad_norm": float(np.linalg.norm(grad)), "function_evaluations": fun.n_calls,
               "seconds": clock["optimizer"]}
        if validation is not None:
            X_val, Y_val, val_labels = validation
            with np.errstate(over="ignore", invalid="ignore"):
                z, a = work._feedforward(X_val)
            val_loss = float(np.mean(work.cost.fn(z, a, Y_val), dtype=np.float64))
            if fun.lmbda:
                val_loss += fun.lmbda / (2 * fun.n) * sum(float(np.sum(w * w)) for w in work.weights)
            row["val_loss"], row["val_accuracy"] = val_loss, float(np.mean(a.argmax(axis=1) == val_labels))
        rows.append(row)
        recorded["theta"] = theta.copy()

    def callback(theta):
        clock["optimizer"] = time.perf_counter() - clock["since"]
        record(np.asarray(theta, dtype=np.float64), len(rows))
        clock["since"] = time.perf_counter()

    record(theta0, 0)
    fun.n_calls = 0
    rows[0]["function_evaluations"], rows[0]["seconds"] = 0, 0.0
    clock["since"] = time.perf_counter()
    try:
        result = sopt.minimize(fun, theta0, jac=True, method=method, tol=tol,
                               callback=callback, options=options)
    except BaseException as exc:
        # Not a trial point of a line search: the last completed iteration.
        net.params[...] = recorded["theta"]
        if isinstance(exc, KeyboardInterrupt):
            raise KeyboardInterrupt(f"fit_full_batch interrupted: the network holds the parameters "
                                    f"after iteration {rows[-1]['iteration']}") from None
        raise
    tail = time.perf_counter() - clock["since"]
    x = np.asarray(result.x, dtype=np.float64)
    if np.array_equal(x, recorded["theta"]):
        # Evaluations after the last callback (a failed final line search) belong to it.
        rows[-1]["function_evaluations"] = fun.n_calls
        rows[-1]["seconds"] += tail
    else:  # a method that ends without calling back for its last step
        clock["optimizer"] = tail
        record(x, len(rows))
    work.set_params(result.x)
    if work is not net:
        net.params[...] = work.params
    history = pd.DataFrame(rows)
    history.attrs.update(result=result, method=method, backend=impl.name,
                         compile_seconds=compile_seconds)
    return history
