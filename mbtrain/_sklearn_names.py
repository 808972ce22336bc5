"""scikit-learn's parameter names, for the estimators of :mod:`mbtrain.sklearn`.

Two names mean exactly what an mbtrain parameter means and are accepted as
aliases: ``max_iter`` (epochs: mbtrain has no ``tol``, so it runs all of them,
as scikit-learn does when the loss keeps improving) and ``learning_rate_init``
(eta: the step of plain SGD, which is scikit-learn's ``solver="sgd"`` with
``momentum=0`` and ``learning_rate="constant"``). The others name things mbtrain
does differently or not at all; giving one is a ``TypeError`` (``ValueError``
from ``set_params``, as scikit-learn raises there) that says what to use
instead, rather than Python's bare "unexpected keyword argument".

Pure Python: no scikit-learn import here.
"""
from __future__ import annotations

import functools

_PLAIN_SGD = "mbtrain trains by plain mini-batch SGD (scikit-learn's solver='sgd', momentum=0, " \
             "learning_rate='constant')"

#: scikit-learn names with no mbtrain equivalent of the same meaning, and what to use instead.
NOT_THE_SAME = {
    "alpha": "mbtrain's L2 strength is lmbda, the book's convention: the weights decay by "
             "1 - eta*lmbda/n per step (n training rows), where scikit-learn's alpha decays them by "
             "1 - learning_rate_init*alpha/batch_size; lmbda = alpha * n / batch_size gives the same decay",
    "activation": "mbtrain's hidden units are always sigmoid (scikit-learn's 'logistic'); "
                  "the output layer follows from cost",
    "solver": f"{_PLAIN_SGD}; for L-BFGS on the whole set use network_.fit_full_batch",
    "momentum": f"{_PLAIN_SGD}, without momentum",
    "nesterovs_momentum": f"{_PLAIN_SGD}, without momentum",
    "learning_rate": f"{_PLAIN_SGD}: the learning rate is eta (or learning_rate_init), constant",
    "power_t": f"{_PLAIN_SGD}: the learning rate is eta (or learning_rate_init), constant",
    "tol": "mbtrain runs exactly epochs (or max_iter) epochs; with early_stopping=True it stops after "
           "n_iter_no_change epochs without a better validation score, with no tolerance",
    "beta_1": f"Adam's parameter; {_PLAIN_SGD}",
    "beta_2": f"Adam's parameter; {_PLAIN_SGD}",
    "epsilon": f"Adam's parameter; {_PLAIN_SGD}",
    "max_fun": "an L-BFGS budget; mbtrain's estimators train by SGD (network_.fit_full_batch runs L-BFGS)",
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
