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
    each call only copies ``theta`` into the network and asks the backend for
    the loss and its gradient (:meth:`~mbtrain.backends.Backend.loss_and_gradient`;
    the numba backend computes both from one forward pass).

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

    def loss_and_grad(self):
        """``(loss, grad)`` at the network's current parameters; grad is float64."""
        with np.errstate(over="ignore", invalid="ignore"):  # a diverging optimizer sees inf, not a warning
            loss, grad = self._backend.loss_and_gradient(self.net, self.X, self.Y, self.lmbda, self.n)
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
        Adds ``val_loss`` (with the L2 term), ``val_cost`` (without) and ``val_accuracy`` to each history row.
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
        time of that iteration, monitoring excluded), and ``val_loss``, ``val_cost``,
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

    compile_seconds = impl.compile("float64", work.cost)
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
        train = impl.evaluate(work, fun.X, fun.Y, labels, fun.lmbda, fun.n)
        row = {"iteration": iteration, "loss": loss, "train_accuracy": train.accuracy,
               "grad_norm": float(np.linalg.norm(grad)), "function_evaluations": fun.n_calls,
               "seconds": clock["optimizer"]}
        if validation is not None:
            val = impl.evaluate(work, *validation, fun.lmbda, fun.n)
            row |= {"val_loss": val.loss, "val_cost": val.cost, "val_accuracy": val.accuracy}
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
