"""scikit-learn estimators backed by an mbtrain :class:`~mbtrain.Network`.

::

    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler
    from mbtrain.sklearn import MBClassifier

    clf = make_pipeline(MinMaxScaler(), MBClassifier(hidden_layer_sizes=(30,), epochs=30, eta=0.5))
    clf.fit(X_train, y_train).score(X_test, y_test)

:class:`MBClassifier` and :class:`MBRegressor` follow the estimator protocol
(``fit``, ``predict``, ``score``, ``partial_fit``, ``get_params``/``set_params``,
``warm_start``) and pass ``sklearn.utils.estimator_checks.check_estimator``.
They do not scale ``X``: a sigmoid network wants inputs of order one, so put a
``MinMaxScaler`` or ``StandardScaler`` in front of it in a ``Pipeline``.

Randomness: one ``random_state`` draws two seeds, in this order, at every cold
start: the network's (its initialization, then the shuffle order of every
epoch, continuing across ``warm_start`` fits and ``partial_fit`` calls), and the
early-stopping validation split's. An int gives the same model at every fit.

scikit-learn (>= 1.6) is an optional extra (``pip install "mbtrain[sklearn]"``);
only this module imports it.
"""
from __future__ import annotations

import math

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "mbtrain.sklearn needs scikit-learn >= 1.6, an optional extra of mbtrain: "
        "pip install \"mbtrain[sklearn]\" (or pip install scikit-learn)"
    ) from exc

from . import _validation as v
from . import _sklearn_names as names
from ._sklearn_names import check_set_params, refuse_sklearn_only_names, resolve_alias
from .callbacks import ScoreWatch
from .network import Network

__all__ = ["MBClassifier", "MBRegressor"]

_SEED_HIGH = np.iinfo(np.int32).max
_TARGET_LOW, _TARGET_HIGH = 0.1, 0.9  # MBRegressor maps training targets here, inside the sigmoid's range


class _MBBase(BaseEstimator):
    """Parameters, network construction and the training loop shared by both estimators."""

    _default_cost = "quadratic"

    @refuse_sklearn_only_names
    def __init__(self, hidden_layer_sizes=(30,), cost=None, init="scaled", epochs=30, batch_size=10,
                 eta=0.5, lmbda=0.0, early_stopping=False, validation_fraction=0.1, n_iter_no_change=10,
                 shuffle=True, warm_start=False, dtype="float64", backend="numba", random_state=None,
                 verbose=False, max_iter=None, learning_rate_init=None, solver="sgd", momentum=0.0,
                 nesterovs_momentum=True, beta_1=0.9, beta_2=0.999, epsilon=1e-8, learning_rate="constant"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.cost = cost
        self.init = init
        self.epochs = epochs
        self.batch_size = batch_size
        self.eta = eta
        self.lmbda = lmbda
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.shuffle = shuffle
        self.warm_start = warm_start
        self.dtype = dtype
        self.backend = backend
        self.random_state = random_state
        self.verbose = verbose
        self.max_iter = max_iter
        self.learning_rate_init = learning_rate_init
        self.solver = solver
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.learning_rate = learning_rate

    def set_params(self, **params):
        check_set_params(type(self).__name__, params)
        return super().set_params(**params)

    # -- hooks the subclasses fill in ---------------------------------------
    def _targets(self, y, first, classes=None):
        """``(y_checked, T)``: ``T`` the network's targets (int labels or a matrix)."""
        raise NotImplementedError

    def _n_outputs(self) -> int:
        raise NotImplementedError

    def _validation_score(self, X_val, T_val):
        """``net -> score`` on checked validation arrays (higher is better)."""
        raise NotImplementedError

    def _stratify(self, T):
        return None

    # -- fitting ---------------------------------------------------------
    def _seeds(self):
        """The network's seed and the validation split's, both from ``random_state``."""
        network_seed, split_seed = check_random_state(self.random_state).randint(_SEED_HIGH, size=2)
        return int(network_seed), int(split_seed)

    def _fit(self, X, y, incremental, classes=None):
        cold = not (incremental or self.warm_start) or not hasattr(self, "network_")
        X, y = validate_data(self, X, y, reset=cold, dtype=(np.float64, np.float32),
                             multi_output=isinstance(self, RegressorMixin), y_numeric=isinstance(self, RegressorMixin))
        hidden = names.hidden_sizes(self.hidden_layer_sizes)  # checks first: a failed fit changes no fitted attribute
        epochs = resolve_alias(self.epochs, 30, self.max_iter, "epochs", "max_iter", v.check_positive_int)
        eta = resolve_alias(self.eta, 0.5, self.learning_rate_init, "eta", "learning_rate_init",
                            v.check_positive_float)
        optimizer = names.optimizer(self.solver, self.momentum, self.nesterovs_momentum, self.beta_1, self.beta_2,
                                    self.epsilon)
        adaptive = names.schedule(self.learning_rate, 1, None) is not None and not incremental
        use_validation = bool(self.early_stopping) and not incremental
        if use_validation or adaptive:
            names.check_patience(self.validation_fraction, self.n_iter_no_change, use_validation)
        y, T = self._targets(y, cold, classes)
        network_seed, split_seed = self._seeds()
        if cold:
            self.network_ = Network((X.shape[1], *hidden, self._n_outputs()),
                                    cost=self._default_cost if self.cost is None else self.cost,
                                    init=self.init, dtype=self.dtype, seed=network_seed)
            self.loss_curve_, self.n_iter_ = [], 0
            self.validation_scores_ = [] if self.early_stopping and not incremental else None
            self.best_validation_score_ = None
        net = self.network_
        if not X.flags.writeable:  # numba compiles a second version for read-only arrays
            X = np.array(X)

        watches = []
        if use_validation:
            X, X_val, T, T_val = self._split(X, T, split_seed)
            X_val = net._check_X(X_val, name="X (validation part)")
            # with the adaptive rate, epochs without a better score lower it, and the schedule stops
            validation = ScoreWatch(self._validation_score(X_val, T_val),
                                    math.inf if adaptive else self.n_iter_no_change)
            watches.append(validation)
        X = np.ascontiguousarray(net._check_X(X))
        Y = np.ascontiguousarray(net._check_targets(X, T))
        loss_watch = names.LossWatch(X, Y, self.lmbda)
        watches.insert(0, loss_watch)
        # the schedule observes after the callbacks: it reads the score they have just measured
        schedule = names.schedule(self.learning_rate if adaptive else "constant", self.n_iter_no_change,
                                  (lambda net: validation.scores[-1]) if use_validation
                                  else (lambda net: -loss_watch.losses[-1]))
        history = net.fit(X, Y, epochs=1 if incremental else epochs, batch_size=self.batch_size,
                          eta=eta, lmbda=self.lmbda, backend=self.backend, shuffle=self.shuffle,
                          monitor=False, progress=bool(self.verbose), callbacks=watches,
                          optimizer=optimizer, schedule=schedule)
        self.n_iter_ += len(history)
        self.loss_curve_.extend(loss_watch.losses)
        if use_validation:
            if self.validation_scores_ is None:
                self.validation_scores_ = []
            self.validation_scores_.extend(validation.scores)
            if validation.best_params is not None:
                net.params[...] = validation.best_params
                net.optimizer_state = validation.best_state
            self.best_validation_score_ = validation.best_score
        return self

    def _split(self, X, T, seed):
        """Hold out ``validation_fraction`` of the rows, stratified by class when that is possible."""
        stratify = self._stratify(T)
        if stratify is not None:
            try:
                return train_test_split(X, T, test_size=self.validation_fraction, random_state=seed,
                                        stratify=stratify)
            except ValueError:  # a class with one row, or fewer held-out rows than classes
                pass
        return train_test_split(X, T, test_size=self.validation_fraction, random_state=seed)

    def fit(self, X, y):
        """Train for ``epochs`` epochs (continuing the current network with ``warm_start``).

        Parameters
        ----------
        X : array-like ``(n_samples, n_features)``, numbers scaled to order one
        y : array-like ``(n_samples,)`` (or ``(n_samples, n_outputs)`` for the regressor)

        Returns
        -------
        self
        """
        return self._fit(X, y, incremental=False)

    @property
    def history_(self):
        """The network's per-epoch history (``epoch``, ``seconds``, ``examples_per_second``)."""
        check_is_fitted(self)
        return self.network_.history

    def _forward(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        return self.network_.forward(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = False
        return tags


class MBClassifier(ClassifierMixin, _MBBase):
    """A sigmoid MLP classifier trained by mbtrain's mini-batch SGD, momentum or Adam.

    Parameters
    ----------
    hidden_layer_sizes : int or tuple of int, default (30,)
        Widths of the hidden layers; the input and output layers follow from
        the data (``n_features_in_``, ``len(classes_)``). ``()`` is multinomial
        logistic regression.
    cost : {"cross_entropy", "quadratic", "softmax"} or None
        None means ``"cross_entropy"`` (the book's chapter 3 network).
    init : {"scaled", "gaussian"}
        Weights N(0, 1/n_in) or N(0, 1); biases N(0, 1).
    epochs : int >= 1, default 30
        Epochs per ``fit`` (also with ``warm_start``: each fit runs this many
        more); ``partial_fit`` runs one.
    batch_size : int >= 1, default 10
    eta : float > 0, default 0.5
        Learning rate (try 0.001 to 0.01 with Adam).
    lmbda : float >= 0, default 0.0
        L2 strength; the decay per step is ``1 - eta * lmbda / n`` with ``n``
        training rows (the book's convention, not scikit-learn's ``alpha``).
    early_stopping : bool, default False
        Hold out ``validation_fraction`` of the rows (stratified by class when
        every class has two rows or more and there are enough), stop after
        ``n_iter_no_change`` epochs without a better validation accuracy and keep
        the best epoch's parameters. Not used by ``partial_fit``.
    validation_fraction : float in (0, 1), default 0.1
    n_iter_no_change : int >= 1, default 10
    shuffle : bool, default True
    warm_start : bool, default False
        Let ``fit`` continue the current network (same classes required).
    dtype : {"float64", "float32"}, default "float64"
        float32 is faster; float64 makes predictions exactly reproducible row by
        row, as scikit-learn's checks expect.
    backend : {"numba", "numpy", "loop"}, default "numba"
    random_state : int, RandomState or None
        Seeds initialization, shuffling and the validation split (see the
        module docstring).
    verbose : bool
        Show mbtrain's progress bar.
    max_iter, learning_rate_init : int, float or None
        scikit-learn's names for ``epochs`` and ``eta`` (the same meaning;
        when not None they are used instead).
    solver : {"sgd", "adam"}, default "sgd"
        As in scikit-learn: ``"sgd"`` is plain SGD when ``momentum`` is 0, else momentum
        (Nesterov's with ``nesterovs_momentum``); ``"adam"`` uses ``beta_1``, ``beta_2``,
        ``epsilon`` (:mod:`mbtrain.optim`). Its state continues in ``warm_start`` and ``partial_fit``.
    momentum : float in [0, 1), default 0.0
        Not scikit-learn's 0.9: by default the estimator trains by the book's plain
        SGD, as it always has; ``momentum=0.9`` gives scikit-learn's sgd solver.
    nesterovs_momentum : bool, default True
    beta_1, beta_2, epsilon : float, default 0.9, 0.999, 1e-8
    learning_rate : {"constant", "adaptive"}, default "constant"
        ``"adaptive"``, the book's schedule in scikit-learn's place: after ``n_iter_no_change``
        epochs without a better validation score (with ``early_stopping``, which then stops
        only through it) or training loss, eta is halved; training stops when it falls below
        eta / 128. Not used by ``partial_fit``.

    scikit-learn's other MLP names (``alpha``, ``tol``, ``activation``,
    ``power_t``, ``max_fun``) mean something mbtrain does differently; each is
    a ``TypeError`` saying what to use instead.

    Attributes
    ----------
    classes_ : ndarray ``(n_classes,)``
        The labels, sorted; the network's output ``j`` is ``classes_[j]``.
    n_features_in_ : int
    feature_names_in_ : ndarray of str (when ``X`` has column names)
    network_ : mbtrain.Network
    loss_curve_ : list of float
        Training loss (cost plus L2 term, the whole training part) after each epoch.
    validation_scores_ : list of float or None
        Validation accuracy after each epoch, with ``early_stopping``.
    best_validation_score_ : float or None
    n_iter_ : int
        Epochs run since the last cold start.
    history_ : pandas.DataFrame
        ``network_.history``.
    """

    _default_cost = "cross_entropy"

    def _targets(self, y, first, classes=None):
        check_classification_targets(y)
        if first:
            labels = np.unique(y) if classes is None else np.unique(np.asarray(classes))
            if len(labels) < 2:
                raise ValueError(f"y: a classifier needs at least 2 classes, got 1 class ({labels.tolist()[0]!r})")
            self.classes_ = labels
        elif classes is not None and not np.array_equal(np.unique(np.asarray(classes)), self.classes_):
            raise ValueError(f"classes: {np.unique(classes).tolist()} differs from classes_ {self.classes_.tolist()} "
                             "of the earlier partial_fit")
        elif classes is None and self.warm_start and not np.array_equal(np.unique(y), self.classes_):
            raise ValueError(f"y: warm_start needs the classes of the previous fit {self.classes_.tolist()}, "
                             f"got {np.unique(y).tolist()}")
        index = np.searchsorted(self.classes_, y)
        index = np.clip(index, 0, len(self.classes_) - 1)
        unknown = self.classes_[index] != y
        if unknown.any():
            row = int(np.argmax(unknown))
            raise ValueError(f"y: row {row} has label {y[row:row + 1].tolist()[0]!r}, which is not one of classes_ "
                             f"{self.classes_.tolist()}")
        return y, index

    def _n_outputs(self) -> int:
        return len(self.classes_)

    def _stratify(self, T):
        return T

    def _validation_score(self, X_val, T_val):
        def score(net):
            return float(np.mean(net._output(X_val)[1].argmax(axis=1) == T_val))
        return score

    def partial_fit(self, X, y, classes=None):
        """One epoch over ``(X, y)``, continuing the current network.

        Parameters
        ----------
        X : array-like ``(n_samples, n_features)``
        y : array-like ``(n_samples,)``
        classes : array-like or None
            Every label the model will ever see; required on the first call
            (which builds the network), optional afterwards (it must then equal
            ``classes_``).

        Returns
        -------
        self
        """
        if classes is None and not hasattr(self, "network_"):
            raise ValueError("classes: required on the first call to partial_fit "
                             "(every label the model will see)")
        return self._fit(X, y, incremental=True, classes=classes)

    def predict_proba(self, X):
        """Class probabilities ``(n_samples, n_classes)``, columns in ``classes_`` order.

        The softmax cost's outputs as they are; the sigmoid outputs of the other
        costs divided by their row sum (their argmax is unchanged).
        """
        a = np.asarray(self._forward(X), dtype=np.float64)
        total = a.sum(axis=1, keepdims=True)
        # A row whose every output underflowed to 0 carries no preference.
        return np.divide(a, total, out=np.full_like(a, 1.0 / a.shape[1]), where=total > 0)

    def predict_log_proba(self, X):
        """``log(predict_proba(X))``."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        """Labels from ``classes_``, the argmax of the output activations."""
        index = self._forward(X).argmax(axis=1)
        return self.classes_[index]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = False
        return tags


class MBRegressor(RegressorMixin, _MBBase):
    """A sigmoid MLP regressor (quadratic cost by default) trained by mbtrain's SGD, momentum or Adam.

    The network's outputs are sigmoids in (0, 1), so each target column is
    mapped linearly from its training range onto [0.1, 0.9] and predictions
    are mapped back: predictions stay within the training range widened by a
    quarter of it on each side (``target_min_``, ``target_scale_``). The
    mapping is fixed at the cold start (first ``fit`` or ``partial_fit``).

    Parameters are those of :class:`MBClassifier`, except ``cost`` (None means
    ``"quadratic"``; ``"cross_entropy"`` also works for targets in [0, 1]) and
    ``eta`` (try 0.5 to 3; the quadratic cost's gradients are small), and the
    validation score of ``early_stopping`` is R^2.

    Attributes
    ----------
    n_outputs_ : int
    target_min_, target_scale_ : ndarray ``(n_outputs,)``
        ``t = 0.1 + 0.8 * (y - target_min_) / target_scale_`` is what the network learns.
    loss_curve_, validation_scores_, best_validation_score_, n_iter_, network_, history_
        As in :class:`MBClassifier` (validation scores are R^2).
    """

    def _targets(self, y, first, classes=None):
        y = np.asarray(y, dtype=np.float64)
        Y = y.reshape(-1, 1) if y.ndim == 1 else y
        if first:
            self._y_ndim = y.ndim
            self.n_outputs_ = Y.shape[1]
            low, high = Y.min(axis=0), Y.max(axis=0)
            self.target_min_ = low
            self.target_scale_ = np.where(high > low, high - low, 1.0)
        elif Y.shape[1] != self.n_outputs_:
            raise ValueError(f"y: has {Y.shape[1]} target columns but the model was fitted with {self.n_outputs_}")
        return y, self._to_network(Y)

    def _to_network(self, Y):
        return _TARGET_LOW + (_TARGET_HIGH - _TARGET_LOW) * (Y - self.target_min_) / self.target_scale_

    def _from_network(self, T):
        return self.target_min_ + (T - _TARGET_LOW) / (_TARGET_HIGH - _TARGET_LOW) * self.target_scale_

    def _n_outputs(self) -> int:
        return self.n_outputs_

    def _validation_score(self, X_val, T_val):
        def score(net):
            T = net._output(X_val)[1]
            residual = np.sum((T_val - T) ** 2)
            total = np.sum((T_val - T_val.mean(axis=0)) ** 2)
            return float(1 - residual / total) if total > 0 else 0.0
        return score

    def partial_fit(self, X, y):
        """One epoch over ``(X, y)``, continuing the current network (built on the first call)."""
        return self._fit(X, y, incremental=True)

    def predict(self, X):
        """Predicted targets, ``(n_samples,)`` or ``(n_samples, n_outputs)`` as ``y`` was at fit."""
        Y = self._from_network(np.asarray(self._forward(X), dtype=np.float64))
        return Y.ravel() if self._y_ndim == 1 else Y

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

