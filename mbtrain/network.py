"""The network: sizes, cost, dtype and one flat parameter buffer.

Rows are examples: ``X`` is ``(n_samples, n_features)``; weights keep the book's
``(n_out, n_in)`` layout so a learner can compare them with their own.
"""
from __future__ import annotations

import numpy as np

from . import _validation as v
from . import optimize, serialization, training
from .backends import DEFAULT_BACKEND, get_backend
from .costs import get_cost
from .params import ParameterLayout, empty_aligned

INITS = ("gaussian", "scaled")


class Network:
    """A feed-forward sigmoid network trained by mini-batch SGD.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths, input first, e.g. ``[784, 30, 10]``; any depth >= 2.
    cost : {"quadratic", "cross_entropy", "softmax"} or Cost
        The cost, which also fixes the output activation (softmax for
        ``"softmax"``, sigmoid otherwise). See :mod:`mbtrain.costs`.
    init : {"gaussian", "scaled"}
        ``"gaussian"``: weights and biases N(0, 1) (book, chapter 1);
        ``"scaled"``: weights N(0, 1/n_in), biases N(0, 1) (book, chapter 3).
    dtype : {"float32", "float64"}
        The dtype of the parameters and of every computation; inputs are cast
        to it once.
    seed : int or None
        Seeds the network's own random stream, used for initialization and,
        unless ``fit`` is given a seed, for the shuffle order.

    Attributes
    ----------
    sizes : tuple of int
    weights : list of ndarray, ``(sizes[l+1], sizes[l])``, views into ``params``
    biases : list of ndarray, ``(sizes[l+1],)``, views into ``params``
    params : ndarray, the flat parameter vector (layout: :mod:`mbtrain.params`)
    cost : Cost
    dtype : numpy.dtype
    rng : numpy.random.Generator
    optimizer_state : mbtrain.optim.OptimizerState or None
        What the last ``fit`` with momentum, Nesterov or Adam left (velocity;
        moments and step count), continued by the next ``fit`` with the same
        optimizer; None before such a fit and after an SGD one.
    """

    def __init__(self, sizes, cost="quadratic", init="gaussian", dtype="float32", seed=None):
        self.sizes = v.check_sizes(sizes)
        self.cost = get_cost(cost)
        self.dtype = v.check_dtype(dtype)
        if init not in INITS:
            raise ValueError(f"init: unknown initialization {init!r}; choose one of {list(INITS)}")
        self.init = init
        self.layout = ParameterLayout(self.sizes)
        self.rng = np.random.default_rng(seed)
        self.params = empty_aligned(self.layout.size, self.dtype)  # 64-byte aligned: the kernels' vector loads
        self.optimizer_state = None
        self._initialize()

    def _initialize(self) -> None:
        # Drawn in float64 and cast, so float32 and float64 networks built from the
        # same seed start from the same weights (up to rounding).
        for w in self.weights:
            scale = 1.0 if self.init == "gaussian" else 1.0 / np.sqrt(w.shape[1])
            w[...] = self.rng.standard_normal(w.shape) * scale
        for b in self.biases:
            b[...] = self.rng.standard_normal(b.shape)

    # -- parameters -------------------------------------------------------
    @property
    def weights(self) -> list[np.ndarray]:
        return self.layout.views(self.params)[0]

    @weights.setter
    def weights(self, values) -> None:
        self._set_layers(values, self.biases, "weights")

    @property
    def biases(self) -> list[np.ndarray]:
        return self.layout.views(self.params)[1]

    @biases.setter
    def biases(self, values) -> None:
        self._set_layers(self.weights, values, "biases")

    def _set_layers(self, weights, biases, name) -> None:
        if len(weights) != self.layout.n_layers or len(biases) != self.layout.n_layers:
            raise ValueError(f"need {self.layout.n_layers} weight matrices and bias vectors")
        wide = self.layout.pack(weights, biases, np.float64)
        with np.errstate(over="ignore"):  # checked right below
            flat = wide.astype(self.dtype)
        self._check_cast(flat, name, source=wide)
        self.params[...] = flat

    def _describe(self, index: int) -> str:
        """Where flat parameter ``index`` lives, e.g. ``"layer 0 weights[2, 5]"``."""
        for l, (w_off, b_off) in enumerate(zip(self.layout.weight_offsets, self.layout.bias_offsets)):
            n_out, n_in = self.sizes[l + 1], self.sizes[l]
            if index < b_off:
                return f"layer {l} weights[{(index - w_off) // n_in}, {(index - w_off) % n_in}]"
            if index < b_off + n_out:
                return f"layer {l} biases[{index - b_off}]"
        raise IndexError(index)

    def _check_cast(self, cast: np.ndarray, name: str, source=None, keep_nonfinite_source=False) -> None:
        """Refuse parameters that are not finite after the cast to this network's dtype.

        ``source`` (the values before the cast) lets the message say that the
        cast overflowed, e.g. 1e300 into float32; with ``keep_nonfinite_source``
        only values the cast made non-finite are refused (a copy of a network
        that is already broken stays possible, and as broken).
        """
        bad = ~np.isfinite(cast)
        if keep_nonfinite_source:
            bad &= np.isfinite(source)
        if not bad.any():
            return
        i = int(np.argmax(bad))
        value = cast[i] if source is None else source[i]
        why = (f"which overflows {cast.dtype.name} (largest {np.finfo(cast.dtype).max:.3g})"
               if np.isfinite(value) else "which is not finite")
        raise ValueError(f"{name}: parameter {i} ({self._describe(i)}) is {float(value)!r}, {why}")

    @property
    def n_params(self) -> int:
        return self.layout.size

    def get_params(self) -> np.ndarray:
        """A copy of the flat parameter vector (float64, for optimizers).

        Order, layer after layer: ``W_0`` row-major ``(n_1, n_0)``, ``b_0``,
        ``W_1``, ``b_1``, ... (see :mod:`mbtrain.params`).
        """
        return self.params.astype(np.float64)

    def set_params(self, theta) -> None:
        """Set every parameter from a flat vector in :meth:`get_params`'s order."""
        theta = np.asarray(theta)
        if theta.shape != (self.layout.size,):
            raise ValueError(f"theta: expected a flat vector of {self.layout.size} parameters "
                             f"for sizes {list(self.sizes)}, got shape {theta.shape}")
        if theta.dtype.kind not in "iuf":
            raise TypeError(f"theta: expected a numeric vector, got dtype {theta.dtype}")
        with np.errstate(over="ignore", invalid="ignore"):  # checked right below
            cast = theta.astype(self.dtype)
        self._check_cast(cast, "theta", source=theta)
        self.params[...] = cast

    def copy(self) -> "Network":
        """An independent copy (parameters, optimizer state and random stream)."""
        return self.astype(self.dtype)

    def astype(self, dtype) -> "Network":
        """A copy with parameters and optimizer state cast to ``dtype``."""
        other = object.__new__(Network)
        other.__dict__.update(self.__dict__)
        other.dtype = v.check_dtype(dtype)
        with np.errstate(over="ignore"):  # checked right below
            other.params = empty_aligned(self.layout.size, other.dtype)
            other.params[...] = self.params
        other._check_cast(other.params, "dtype", source=self.params, keep_nonfinite_source=True)
        state = getattr(self, "optimizer_state", None)
        other.optimizer_state = None if state is None else state.astype(other.dtype)
        if state is not None:
            for key, a in other.optimizer_state.arrays.items():
                if not np.isfinite(a).all() and np.isfinite(state.arrays[key]).all():
                    i = int(np.argmax(~np.isfinite(a)))
                    raise ValueError(f"dtype: optimizer state {key}[{i}] is {float(state.arrays[key][i])!r}, "
                                     f"which overflows {other.dtype.name}")
        other.rng = np.random.default_rng()
        other.rng.bit_generator.state = self.rng.bit_generator.state
        if hasattr(self, "history"):
            other.history = self.history.copy()
        return other

    def __repr__(self) -> str:
        return (f"Network(sizes={list(self.sizes)}, cost={self.cost.name!r}, "
                f"init={self.init!r}, dtype={self.dtype.name!r})")

    # -- inference ------------------------------------------------------
    def _check_X(self, X, name="X", keep_float32=False, warn_unscaled=False, stacklevel=1):
        return v.check_X(X, self.sizes[0], self.dtype, name=name, keep_float32=keep_float32,
                         warn_unscaled=warn_unscaled, stacklevel=stacklevel + 1)

    def _check_targets(self, X, y, name="y", keep_labels=False):
        return v.check_targets(y, X.shape[0], self.sizes[-1], self.dtype, name=name, keep_labels=keep_labels)

    def _check_validation(self, validation_data):
        """``(X_val, Y_val, labels_val)`` from a ``(X_val, y_val)`` pair, or None."""
        if validation_data is None:
            return None
        try:
            X_val, y_val = validation_data
        except (TypeError, ValueError):
            raise TypeError("validation_data: expected a pair (X_val, y_val)") from None
        X_val = self._check_X(X_val, name="validation_data[0]")
        Y_val = self._check_targets(X_val, y_val, name="validation_data[1]")
        return X_val, Y_val, Y_val.argmax(axis=1)

    def _output(self, X, backend=DEFAULT_BACKEND):
        """``(z, a)`` of the output layer for a checked ``X``, computed by ``backend``."""
        return get_backend(backend).output(self, X)

    def forward(self, X) -> np.ndarray:
        """Output activations, shape ``(n_samples, sizes[-1])``, in the network's dtype."""
        return self._output(self._check_X(X))[1]

    def predict(self, X) -> np.ndarray:
        """Integer class labels, the argmax of the output activations."""
        return self.forward(X).argmax(axis=1)

    def score(self, X, y) -> float:
        """Accuracy: the fraction of rows whose predicted label equals ``y``.

        ``y`` is integer labels in ``[0, sizes[-1])`` or a target matrix (its
        row argmax is the label), checked as ``fit`` checks it: a column of
        labels ``(n, 1)`` or a label 0.5 is an error, not a guess.
        """
        X = self._check_X(X)
        labels = v.check_labels(y, X.shape[0], self.sizes[-1])
        return float(np.mean(self._output(X)[1].argmax(axis=1) == labels))

    def loss(self, X, Y, lmbda=0.0, n=None, backend=DEFAULT_BACKEND) -> float:
        """Mean cost over the rows plus ``lmbda / (2 n) * sum ||W||^2``.

        ``Y`` is integer labels (one-hot encoded) or a target matrix; ``n``
        defaults to the number of rows. Biases are never regularized.
        """
        X = self._check_X(X)
        Y = self._check_targets(X, Y, name="Y")
        lmbda = v.check_nonnegative_float(lmbda, "lmbda")
        n = X.shape[0] if n is None else v.check_positive_int(n, "n")
        return get_backend(backend).loss(self, X, Y, lmbda, n)

    def gradients(self, X, Y, lmbda=0.0, n=None, backend=DEFAULT_BACKEND):
        """The exact gradient of :meth:`loss` with the same arguments.

        Returns
        -------
        (grad_weights, grad_biases) : lists of ndarray shaped like ``weights``
            and ``biases``, in the network's dtype (views into one flat vector).
        """
        impl = get_backend(backend)
        X = self._check_X(X)
        Y = self._check_targets(X, Y, name="Y")
        lmbda = v.check_nonnegative_float(lmbda, "lmbda")
        n = X.shape[0] if n is None else v.check_positive_int(n, "n")
        return self.layout.views(impl.loss_gradient(self, X, Y, lmbda, n))

    def fit(self, X, y, epochs, batch_size, eta, lmbda=0.0, backend=DEFAULT_BACKEND,
            shuffle=True, seed=None, validation_data=None, optimizer="sgd", schedule=None, **options):
        """Train by mini-batch SGD (or ``optimizer``); returns the per-epoch history (a DataFrame).

        ``optimizer``: ``"sgd"``, ``"momentum"``, ``"nesterov"``, ``"adam"`` or
        an :mod:`mbtrain.optim` object; ``schedule``: None (constant eta),
        ``"book"``, ``"step"``, ``"cosine"``, an :mod:`mbtrain.schedules`
        object or a callable ``epoch -> factor``. Options: ``monitor``,
        ``progress``, ``callbacks``, ``early_stopping``, ``checkpoint``; see
        :func:`mbtrain.training.fit` for all of them.
        """
        return training.fit(self, X, y, epochs=epochs, batch_size=batch_size, eta=eta, lmbda=lmbda,
                            backend=backend, shuffle=shuffle, seed=seed, validation_data=validation_data,
                            optimizer=optimizer, schedule=schedule, **options)

    def fit_full_batch(self, X, y, method="L-BFGS-B", maxiter=200, lmbda=0.0, **options):
        """Train on the whole set with ``scipy.optimize.minimize`` (L-BFGS-B, TNC, BFGS, CG).

        See :func:`mbtrain.optimize.fit_full_batch`; scipy is an optional extra.
        """
        return optimize.fit_full_batch(self, X, y, method=method, maxiter=maxiter, lmbda=lmbda, **options)

    # -- persistence ----------------------------------------------------------
    def save(self, path, format="npz"):
        """Save atomically: ``"npz"`` (mbtrain's, with history, random state and optimizer state) or
        ``"network2"`` (the book's JSON, without them). See :mod:`mbtrain.serialization`."""
        return serialization.save(self, path, format=format)


def load(path, dtype=None) -> Network:
    """Load a network saved by :meth:`Network.save` or by the book's ``network2.save``.

    The format is recognised from the content, not the file name; ``dtype``
    casts the parameters (default: the saved dtype, float64 for network2).
    Raises ``FileNotFoundError`` or :class:`mbtrain.ModelFormatError` naming the
    file and what is wrong with it. See :mod:`mbtrain.serialization`.
    """
    return serialization.load(path, dtype, build=Network)
