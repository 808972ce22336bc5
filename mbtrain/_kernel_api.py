"""What the numba kernels share with their callers: cost ids, status codes, argument tuples.

Pure Python and numpy, importing nothing of mbtrain: :mod:`mbtrain.costs`,
:mod:`mbtrain.kernels`, :mod:`mbtrain.fast_kernels` and the numba backend all
read it without importing each other.

Never change a constant here: the kernels compare against them in compiled
code that numba caches on disk, and numba revalidates a cached kernel against
its own source file only, not against this one. A new cost takes the next
free id. (The tuples are safe to change: their fields are part of every
compiled signature, so a changed tuple compiles anew.)
"""
from __future__ import annotations

import types
from typing import NamedTuple

import numpy as np

from .params import empty_aligned

#: ``Cost.kernel_id`` of the costs the kernels know.
QUADRATIC = 0
CROSS_ENTROPY = 1
SOFTMAX = 2

#: ``Optimizer.kind_id`` of each update rule (:mod:`mbtrain.optim` takes them from here).
SGD_KIND, MOMENTUM_KIND, NESTEROV_KIND, ADAM_KIND = 0, 1, 2, 3

#: An epoch kernel's return when every parameter is finite at its end. A checked
#: epoch returns instead the index ``k >= 0`` of the first batch after which one is not.
FINITE = -1
#: An unchecked epoch's return when a parameter is not finite at its end: rerun it checked to learn the batch.
DIVERGED_AT_UNKNOWN_BATCH = -2


class Net(NamedTuple):
    """A network as the fast kernels see it: arrays and typed scalars only."""

    params: np.ndarray  # (n_params,) flat parameters (mbtrain.params.ParameterLayout), updated in place
    sizes: np.ndarray  # (L + 1,) int64 layer widths
    cost_id: int  # QUADRATIC, CROSS_ENTROPY or SOFTMAX
    one: np.floating  # 1 in the dtype of params: numba types a literal 1 as int64, which widens float32


class Rule(NamedTuple):
    """An optimizer as the fused epoch sees it: its kind and hyperparameters.

    The hyperparameters are typed in the dtype of the parameters, as numpy
    casts a Python float against an array of them (so float32 stays float32);
    the ``*64`` fields are the float64 values from which the kernel computes
    Adam's bias corrections each step, in the order of :class:`mbtrain.optim.Adam`.
    """

    kind: int  # MOMENTUM_KIND, NESTEROV_KIND or ADAM_KIND
    eta: np.floating
    mu: np.floating
    beta1: np.floating
    one_minus_beta1: np.floating  # 1 - beta1 computed in float64, then typed
    beta2: np.floating
    one_minus_beta2: np.floating
    eps: np.floating
    eta64: float
    beta1_64: float
    beta2_64: float


class Work(NamedTuple):
    """Work space of the fast kernels for batches of up to ``batch_size`` rows."""

    acts: np.ndarray  # (batch_size * sum(sizes[1:]),) activations of layers 1..L, one layer after the other
    deltas: np.ndarray  # the same for the errors delta
    index: np.ndarray  # arange(batch_size): the work rows, as row indices for the dense kernels
    inputs: np.ndarray  # (max(batch_size, 2), n_in): the batch's input rows gathered, 64-byte aligned; or none


def new_work(sizes, batch_size: int, dtype, gather: bool = True) -> Work:
    """A :class:`Work` of ``batch_size`` rows for layer widths ``sizes`` in ``dtype``, 64-byte aligned.

    ``gather``: room for a copy of each batch's input rows (the epochs read the
    first layer's inputs from there: aligned, whatever the caller's array; the
    online epoch keeps this example and the next); without (a whole-data pass
    such as the gradient), no room is taken.
    """
    total = batch_size * int(sum(sizes[1:]))
    return Work(empty_aligned(total, dtype), empty_aligned(total, dtype), np.arange(batch_size, dtype=np.int64),
                empty_aligned((max(batch_size, 2) if gather else 0, sizes[0]), dtype))  # online: 2 rows


def numba_variant(function, name: str):
    """A copy of ``function`` under another name, so each compiled variant has its own cache file.

    numba names a function's on-disk cache after its qualified name and source
    line, and its cache key does not include ``parallel``: two dispatchers over
    one function would share one cache file, and whichever variant compiled
    first would be loaded for both (it was: the parallel epoch silently ran the
    serial code). ``tests/test_kernels.py`` checks the names differ.
    """
    clone = types.FunctionType(function.__code__, function.__globals__, name, function.__defaults__,
                               function.__closure__)
    clone.__qualname__ = name
    clone.__doc__ = function.__doc__
    return clone
