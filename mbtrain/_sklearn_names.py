"""scikit-learn's parameter names for the estimators of :mod:`mbtrain.sklearn`, their checks, and the
pieces of those estimators that need no scikit-learn.

Two names mean exactly what an mbtrain parameter means and are accepted as
aliases: ``max_iter`` (epochs: mbtrain has no ``tol``, so it runs all of them,
as scikit-learn does when the loss keeps improving) and ``learning_rate_init``
(eta, the learning rate of every solver). The optimizer's names are
scikit-learn's and mean what they mean there (:func:`optimizer`):
``solver`` ("sgd", "adam"), ``momentum``, ``nesterovs_momentum``, ``beta_1``,
``beta_2``, ``epsilon``, and ``learning_rate`` ("constant"; "adaptive", the
book's schedule, :func:`schedule`). The others name things mbtrain does
differently or not at all; giving one is a ``TypeError`` (``ValueError`` from
``set_params``, as scikit-learn raises there) that says what to use instead,
rather than Python's bare "unexpected keyword argument".

No scikit-learn import here.
"""
from __future__ import annotations

import functools
import numbers

from .optim import SGD, Adam, Momentum, check_epsilon, check_fraction
from .schedules import Book
from .training import evaluate

SOLVERS = ("sgd", "adam")
LEARNING_RATES = ("constant", "adaptive")

#: scikit-learn names with no mbtrain equivalent of the same meaning, and what to use instead.
NOT_THE_SAME = {
    "alpha": "mbtrain's L2 strength is lmbda, the book's convention: the weights decay by "
             "1 - eta*lmbda/n per step (n training rows), where scikit-learn's alpha decays them by "
             "1 - learning_rate_init*alpha/batch_size; lmbda = alpha * n / batch_size gives the same decay",
    "activation": "mbtrain's hidden units are always sigmoid (scikit-learn's 'logistic'); "
                  "the output layer follows from cost",
    "power_t": "mbtrain's learning_rate is 'constant' or 'adaptive' (the book's schedule), not 'invscaling'; "
               "for others pass a schedule to network_.fit (mbtrain.schedules)",
    "tol": "mbtrain runs exactly epochs (or max_iter) epochs; with early_stopping=True it stops after "
           "n_iter_no_change epochs without a better validation score, with no tolerance",
    "max_fun": "an L-BFGS budget; mbtrain's estimators train by mini-batches, solver 'sgd' or 'adam' "
               "(network_.fit_full_batch runs L-BFGS)",
}


def _message(owner: str, name: str) -> str:
    return f"{owner}: {name!r} is scikit-learn's MLP parameter, not mbtrain's: {NOT_THE_SAME[name]}"


def refuse_sklearn_only_names(init):
    """Wrap an estimator's ``__init__`` so scikit-learn-only names get a helpful ``TypeError``.

    ``functools.wraps`` keeps the wrapped signature visible (``inspect.signature``
    follows ``__wrapped__``), which is what scikit-learn's ``get_params`` and
    ``clone`` read: the estimator's parameters stay exactly its explicit ones.
    """
    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        for name in kwargs:
            if name in NOT_THE_SAME:
                raise TypeError(_message(type(self).__name__, name))
        init(self, *args, **kwargs)

    return __init__


def check_set_params(owner: str, params) -> None:
    """``ValueError`` for a scikit-learn-only name given to ``set_params``."""
    for name in params:
        if name in NOT_THE_SAME:
            raise ValueError(_message(owner, name))


def resolve_alias(value, default, alias_value, name: str, alias: str, check):
    """The setting from ``name`` or from its scikit-learn alias ``alias`` (which wins when not None).

    ``check(alias_value, alias)`` validates the alias under its own name. Both
    given, with ``name`` away from its default and a different value, is an
    error: one setting, two names.
    """
    if alias_value is None:
        return value
    alias_value = check(alias_value, alias)
    if value != default and value != alias_value:
        raise ValueError(f"{alias}={alias_value!r} and {name}={value!r} are one setting under two names "
                         f"({alias} is scikit-learn's name for {name}): give one of them")
    return alias_value


def optimizer(solver, momentum, nesterovs_momentum, beta_1, beta_2, epsilon):
    """The :mod:`mbtrain.optim` object of scikit-learn's solver settings, each checked under its own name.

    ``solver="sgd"``: plain SGD when ``momentum`` is 0, else momentum ``mu =
    momentum``, Nesterov's when ``nesterovs_momentum`` (scikit-learn's rules at
    a constant rate; its velocity is ``-eta`` times mbtrain's). ``"adam"``:
    Adam with ``beta_1``, ``beta_2``, ``epsilon``.
    """
    momentum = check_fraction(momentum, "momentum")
    if isinstance(nesterovs_momentum, float) or nesterovs_momentum not in (True, False):
        raise ValueError(f"nesterovs_momentum: must be True or False, got {nesterovs_momentum!r}")
    nesterovs_momentum = bool(nesterovs_momentum)
    adam = Adam(check_fraction(beta_1, "beta_1"), check_fraction(beta_2, "beta_2"), check_epsilon(epsilon, "epsilon"))
    if solver == "adam":
        return adam
    if solver == "sgd":
        return SGD() if momentum == 0 else Momentum(momentum, nesterov=nesterovs_momentum)
    if solver == "lbfgs":
        raise ValueError("solver: mbtrain's estimators train by mini-batches, 'sgd' or 'adam'; for L-BFGS on the "
                         "whole set use network_.fit_full_batch")
    raise ValueError(f"solver: expected one of {list(SOLVERS)}, got {solver!r}")


def schedule(learning_rate, patience, score):
    """None for ``"constant"``; for ``"adaptive"`` the book's schedule watching ``score`` (``net -> float``).

    As scikit-learn's ``"adaptive"``, epochs without a better score lower the
    rate instead of stopping (here: halved after ``patience`` epochs), and
    training stops when it has fallen far (below ``eta / 128``).
    """
    if learning_rate == "constant":
        return None
    if learning_rate == "adaptive":
        return Book(patience=patience, score=score)
    raise ValueError(f"learning_rate: expected one of {list(LEARNING_RATES)}, got {learning_rate!r}"
                     + (" (mbtrain has no 'invscaling')" if learning_rate == "invscaling" else ""))


def hidden_sizes(sizes) -> tuple[int, ...]:
    """``hidden_layer_sizes`` as a tuple of positive ints (an int is one layer)."""
    given = sizes
    if isinstance(sizes, numbers.Integral) and not isinstance(sizes, bool):
        sizes = (sizes,)
    try:
        sizes = tuple(sizes)
    except TypeError:
        raise ValueError(f"hidden_layer_sizes: expected a tuple of layer widths like (30,), got {given!r}") from None
    for i, s in enumerate(sizes):
        if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1:
            raise ValueError(f"hidden_layer_sizes[{i}]: layer widths must be positive integers, got {s!r}")
    return tuple(int(s) for s in sizes)


def check_patience(validation_fraction, n_iter_no_change, validation=True) -> None:
    """``validation_fraction`` in (0, 1) (when a validation part is held out) and ``n_iter_no_change`` >= 1."""
    if validation and (not isinstance(validation_fraction, numbers.Real) or not 0 < validation_fraction < 1):
        raise ValueError(f"validation_fraction: must be in (0, 1), got {validation_fraction!r}")
    n = n_iter_no_change
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"n_iter_no_change: must be an integer >= 1, got {n!r}")


class LossWatch:
    """Per-epoch callback: the training loss (one forward pass over checked arrays)."""

    def __init__(self, X, Y, lmbda):
        self.X, self.Y, self.lmbda = X, Y, lmbda
        self.labels = Y.argmax(axis=1)
        self.losses = []

    def __call__(self, net, history) -> bool:
        self.losses.append(evaluate(net, self.X, self.Y, self.labels, self.lmbda, self.X.shape[0]).loss)
        return False
