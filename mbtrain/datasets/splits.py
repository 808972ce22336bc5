"""Holding out a validation set: seeded random splits and the book's fixed one.

Shapes: ``X`` is ``(n, ...)`` (rows are examples), ``y`` is ``(n,)`` or ``(n, k)``.
"""
from __future__ import annotations

import numbers

import numpy as np

BOOK_VALIDATION_ROWS = 10_000


def _check_rows(X, y) -> int:
    if not hasattr(X, "shape") or len(X.shape) < 1:
        raise TypeError(f"X: expected an array with rows as examples, got {type(X).__name__}")
    if not hasattr(y, "shape") or len(y.shape) < 1:
        raise TypeError(f"y: expected an array of labels or targets, got {type(y).__name__}")
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"y: has {y.shape[0]} rows but X has {X.shape[0]}")
    return X.shape[0]


def _validation_rows(n_validation, n: int) -> int:
    if isinstance(n_validation, bool) or not isinstance(n_validation, numbers.Real):
        raise TypeError(f"n_validation: must be a row count (int) or a fraction (float), got {n_validation!r}")
    if isinstance(n_validation, numbers.Integral):
        count = int(n_validation)
        if not 1 <= count < n:
            raise ValueError(f"n_validation: must be in [1, {n - 1}] for {n} rows, got {count}")
        return count
    fraction = float(n_validation)
    if not 0 < fraction < 1:
        raise ValueError(f"n_validation: a fraction must be in (0, 1), got {fraction}")
    count = int(round(fraction * n))
    if not 1 <= count < n:
        raise ValueError(f"n_validation: a fraction of {fraction} of {n} rows leaves an empty part")
    return count


def train_validation_split(X, y, n_validation=10_000, seed=None):
    """A random validation subset, reproducible from ``seed``.

    Parameters
    ----------
    X : ndarray, ``(n, ...)``
    y : ndarray, ``(n,)`` labels or ``(n, k)`` targets
    n_validation : int or float
        Rows to hold out: a count in ``[1, n - 1]``, or a fraction in (0, 1)
        of ``n`` (rounded).
    seed : int, numpy.random.Generator or None
        The same seed gives the same split for the same ``n``; ``None`` draws
        fresh entropy.

    Returns
    -------
    X_train : ndarray, ``(n - n_validation, ...)``
    y_train : ndarray
    X_val : ndarray, ``(n_validation, ...)``
    y_val : ndarray

    Notes
    -----
    One random permutation chooses the validation rows; each part is then one
    boolean-mask copy of its rows, kept in their original order (the trainer
    shuffles indices each epoch, so reordering the data here would buy
    nothing). Together the two parts hold every row exactly once. The dtypes
    are those of the inputs.
    """
    n = _check_rows(X, y)
    count = _validation_rows(n_validation, n)
    rng = np.random.default_rng(seed)
    is_validation = np.zeros(n, dtype=bool)
    is_validation[rng.permutation(n)[:count]] = True
    is_train = ~is_validation
    return X[is_train], y[is_train], X[is_validation], y[is_validation]


def book_split(X, y, n_validation=BOOK_VALIDATION_ROWS):
    """The book's split: the last ``n_validation`` rows validate, the rest train.

    Applied to MNIST's 60,000 training images this gives the 50,000 / 10,000
    training and validation sets of the book's ``mnist.pkl.gz`` (first 50,000,
    last 10,000; the 10,000 test images stay the test set).

    Parameters
    ----------
    X : ndarray, ``(n, ...)``
    y : ndarray, ``(n,)`` or ``(n, k)``
    n_validation : int
        Rows held out from the end, 10,000 by default.

    Returns
    -------
    X_train, y_train, X_val, y_val : ndarray
        Views of ``X`` and ``y`` (no copy): ``X[:n - n_validation]`` and
        ``X[n - n_validation:]``.
    """
    n = _check_rows(X, y)
    if isinstance(n_validation, bool) or not isinstance(n_validation, numbers.Integral):
        raise TypeError(f"n_validation: must be an integer row count, got {n_validation!r}")
    if not 1 <= n_validation < n:
        raise ValueError(f"n_validation: must be in [1, {n - 1}] for {n} rows, got {n_validation}")
    cut = n - int(n_validation)
    return X[:cut], y[:cut], X[cut:], y[cut:]


def stratified_split(y, n_holdout, seed=0) -> np.ndarray:
    """Which rows to hold out: a seeded random ``n_holdout`` of them, each class in proportion.

    Files sorted by label are common, so the held-out rows are never the last
    ones: within each class they are a random choice, and each class gives
    its share of ``n_holdout`` (largest remainders round it), so the held-out
    part has the class balance of the whole. A class is never held out whole:
    a class of one row stays in the rest, and a class of k rows gives at most
    k - 1; the part held out is then a few rows smaller than asked.

    Parameters
    ----------
    y : ndarray, ``(n,)``
        Integer class labels.
    n_holdout : int or float
        A row count in ``[1, n - 1]``, or a fraction in (0, 1) of ``n`` (rounded).
    seed : int or numpy.random.Generator
        The same seed and labels give the same rows, whatever the features' dtype.

    Returns
    -------
    ndarray of bool, ``(n,)``
        True for the rows held out (``X[mask]``, ``X[~mask]`` give the two parts,
        each in the file's order).
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y: a stratified split needs one class label per row, got shape {y.shape}")
    n = y.shape[0]
    if n < 2:
        raise ValueError(f"y: a split needs at least 2 rows, got {n}")
    count = _validation_rows(n_holdout, n)
    classes, inverse, sizes = np.unique(y, return_inverse=True, return_counts=True)
    share = sizes * (count / n)
    quota = np.floor(share).astype(np.int64)
    by_remainder = np.argsort(-(share - quota), kind="stable")
    quota[by_remainder[:count - int(quota.sum())]] += 1
    quota = np.minimum(quota, sizes - 1)  # never a whole class
    rng = np.random.default_rng(seed)
    # One permutation, then rows grouped by class (stable: random order within each class);
    # each class's first quota rows in that order are held out.
    order = rng.permutation(n)
    order = order[np.argsort(inverse[order], kind="stable")]
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    rank = np.arange(n) - starts[inverse[order]]
    held = np.zeros(n, dtype=bool)
    held[order[rank < quota[inverse[order]]]] = True
    return held
