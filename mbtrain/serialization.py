"""Saving and loading networks: mbtrain's ``.npz`` and the book's network2 JSON.

mbtrain format (``format="npz"``): an uncompressed ``.npz`` holding

- ``params``: the flat parameter vector in the network's dtype (layout in
  :mod:`mbtrain.params`);
- ``metadata``: a JSON string with ``format`` ("mbtrain-network"),
  ``format_version``, ``sizes``, ``cost``, ``init``, ``dtype``, the random
  stream's state (so training resumes exactly) and the mbtrain version;
- ``history``: the training history as CSV text (may be empty);
- when the network holds an optimizer state (momentum's velocity, Adam's
  moments), its arrays as ``optimizer_velocity`` or ``optimizer_m`` and
  ``optimizer_s`` (flat, in the parameters' layout and dtype), with the
  optimizer's description and the step count in the metadata's
  ``optimizer_state``. Such a file is format version 2 (an older mbtrain
  refuses it rather than drop the state); one without is version 1.

The book's format (``format="network2"``): the JSON of ``network2.Network.save``,
``{"sizes", "weights", "biases", "cost"}`` with biases as ``(n, 1)`` nested lists
and the cost as its class name (``"QuadraticCost"`` or ``"CrossEntropyCost"``).
It has no optimizer state: saving a network that holds one warns that the
state is dropped.

Every write is atomic (:func:`mbtrain._atomic.atomic_write`); every load checks
what it reads and says what is wrong with a file that is not a valid model.
"""
from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ._atomic import atomic_write
from ._validation import check_sizes
from ._version import __version__
from .datasets._io import NpzMembers
from .optim import OptimizerState, from_description

FORMAT_NAME = "mbtrain-network"
FORMAT_VERSION = 2  #: the newest this mbtrain reads and writes (2: the optimizer state)
_VERSION_WITHOUT_STATE = 1  # written when there is no state: any mbtrain reads it
STATE_PREFIX = "optimizer_"  # npz members of the optimizer state: optimizer_velocity, optimizer_m, ...
NETWORK2_COSTS = {"QuadraticCost": "quadratic", "CrossEntropyCost": "cross_entropy"}


class ModelFormatError(ValueError):
    """A file is not a valid saved model; the message says why."""


def save(net, path, format="npz") -> Path:
    """Write ``net`` to ``path`` atomically; returns the path."""
    path = Path(path)
    if format == "npz":
        metadata = {
            "format": FORMAT_NAME, "format_version": _VERSION_WITHOUT_STATE, "mbtrain_version": __version__,
            "sizes": list(net.sizes), "cost": net.cost.name, "init": net.init, "dtype": net.dtype.name,
            "rng_state": _jsonable(net.rng.bit_generator.state),
        }
        state = getattr(net, "optimizer_state", None)
        state_members = {}
        if state is not None:
            metadata["format_version"] = FORMAT_VERSION
            metadata["optimizer_state"] = {"optimizer": state.optimizer, "step": int(state.step)}
            state_members = {STATE_PREFIX + key: a for key, a in state.arrays.items()}
        history = getattr(net, "history", None)
        history_csv = history.to_csv(index=False) if history is not None and not history.empty else ""
        with atomic_write(path, "wb") as f:
            np.savez(f, params=net.params, metadata=np.array(json.dumps(metadata)),
                     history=np.array(history_csv), **state_members)
    elif format == "network2":
        inverse = {v: k for k, v in NETWORK2_COSTS.items()}
        if net.cost.name not in inverse:
            raise ValueError(
                f"format: the book's network2 format has no {net.cost.name!r} cost; "
                "save it with format='npz'")
        state = getattr(net, "optimizer_state", None)
        if state is not None:
            warnings.warn(f"format: the book's network2 format has no optimizer state; the network's state "
                          f"for {state.label} is not saved (format='npz' keeps it)", UserWarning, stacklevel=3)
        data = {
            "sizes": list(net.sizes),
            "weights": [w.astype(float).tolist() for w in net.weights],
            "biases": [b.astype(float)[:, None].tolist() for b in net.biases],
            "cost": inverse[net.cost.name],
        }
        with atomic_write(path, "w") as f:
            json.dump(data, f)
    else:
        raise ValueError(f"format: unknown format {format!r}; choose 'npz' or 'network2'")
    return path


def load(path, dtype=None, *, build):
    """Load a network saved by :func:`save` or by the book's ``network2.save``.

    The format is recognised from the content, not the file name. This module
    reads and checks files; it does not know the network class:
    :func:`mbtrain.load` passes it as ``build``.

    Parameters
    ----------
    path : str or Path
    dtype : {"float32", "float64"}, optional
        Cast the parameters; default: the saved dtype (float64 for network2).
    build : callable ``(sizes, cost=, init=, dtype=) -> network``
        Makes the network the parameters are loaded into (``mbtrain.Network``).

    Raises
    ------
    FileNotFoundError, ModelFormatError
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(b"PK"):
        return _load_npz(path, dtype, build)
    if head.lstrip()[:1] in (b"{", b""):
        return _load_network2(path, dtype, build)
    raise ModelFormatError(f"{path}: not a saved model (neither an mbtrain .npz nor network2 JSON)")


def _n_params(sizes) -> int:
    return sum(n_out * n_in + n_out for n_in, n_out in zip(sizes[:-1], sizes[1:]))


def _checked_sizes(path, sizes) -> tuple[int, ...]:
    try:
        return check_sizes(sizes)
    except (TypeError, ValueError) as exc:
        raise ModelFormatError(f"{path}: invalid model sizes ({exc})") from None


def _load_npz(path, dtype, build):
    # Every array is read through NpzMembers: a header may not claim more than
    # the file holds, so a damaged or hostile model cannot make us allocate.
    with NpzMembers(path, error=ModelFormatError) as archive:
        missing = {"params", "metadata"} - set(archive.files)
        if missing:
            raise ModelFormatError(f"{path}: an .npz but not an mbtrain model (missing {sorted(missing)})")
        metadata = _text(path, archive.read("metadata"), "metadata")
        history_csv = _text(path, archive.read("history"), "history") if "history" in archive.files else ""
        metadata = _json(path, metadata, "corrupted model metadata, not JSON")
        if not isinstance(metadata, dict) or metadata.get("format") != FORMAT_NAME:
            raise ModelFormatError(f"{path}: an .npz but not an mbtrain model (no '{FORMAT_NAME}' metadata)")
        version = metadata.get("format_version", 0)
        if isinstance(version, bool) or not isinstance(version, int):
            raise ModelFormatError(f"{path}: invalid model metadata (format_version {version!r} is not an integer)")
        if version > FORMAT_VERSION:
            raise ModelFormatError(
                f"{path}: saved by a newer mbtrain (format version {version}); upgrade mbtrain")
        if "sizes" not in metadata:
            raise ModelFormatError(f"{path}: invalid model metadata (no 'sizes')")
        sizes = _checked_sizes(path, metadata["sizes"])
        params = archive.read("params")
        saved_state = _read_state(path, metadata, archive)
    if params.dtype.kind != "f" or params.ndim != 1:
        raise ModelFormatError(f"{path}: params must be a flat float vector, got shape {params.shape} of {params.dtype}")
    # Checked before the network is built: sizes claiming 10^12 parameters must
    # not allocate them.
    needed = _n_params(sizes)
    if params.size != needed:
        raise ModelFormatError(
            f"{path}: holds {params.size} parameters but sizes {list(sizes)} need {needed}")
    if not np.isfinite(params).all():
        raise ModelFormatError(f"{path}: parameters contain NaN or inf")
    try:
        net = build(sizes, cost=metadata.get("cost"), init=metadata.get("init", "gaussian"),
                      dtype=dtype or metadata.get("dtype"))
    except (KeyError, ValueError, TypeError) as exc:
        raise ModelFormatError(f"{path}: invalid model metadata ({exc})") from None
    with np.errstate(over="ignore"):  # an overflow is refused just below, with the file's name
        net.params[...] = params
    _check_cast(path, net, params.dtype)
    if saved_state is not None:
        net.optimizer_state = _checked_state(path, net, *saved_state)
    if "rng_state" in metadata:
        try:
            net.rng.bit_generator.state = metadata["rng_state"]
        except (TypeError, ValueError, KeyError, AttributeError, OverflowError):
            pass  # a foreign random state: keep a fresh stream
    if history_csv:
        net.history = _history(path, history_csv)
    return net


def _read_state(path, metadata, archive):
    """``(optimizer, step, arrays)`` of the saved optimizer state as read, or None when there is none."""
    spec = metadata.get("optimizer_state")
    if spec is None:
        return None
    if not isinstance(spec, dict) or not {"optimizer", "step"} <= set(spec):
        raise ModelFormatError(f"{path}: invalid optimizer state metadata (needs 'optimizer' and 'step')")
    try:
        optimizer = from_description(spec["optimizer"])
    except (TypeError, ValueError) as exc:
        raise ModelFormatError(f"{path}: invalid optimizer state ({exc})") from None
    step = spec["step"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ModelFormatError(f"{path}: invalid optimizer state (step {step!r} is not a whole number >= 0)")
    arrays = {}
    for key in optimizer.state_names:
        if STATE_PREFIX + key not in archive.files:
            raise ModelFormatError(f"{path}: the optimizer state of {optimizer!r} has no {key!r} array")
        arrays[key] = archive.read(STATE_PREFIX + key)
    return optimizer, step, arrays


def _checked_state(path, net, optimizer, step, arrays) -> OptimizerState:
    """The saved state cast to the network's dtype, refused (naming ``path``) unless it fits and is finite."""
    cast = {}
    for key, a in arrays.items():
        if a.dtype.kind != "f" or a.shape != (net.layout.size,):
            raise ModelFormatError(f"{path}: optimizer state {key!r} must be a flat float vector of "
                                   f"{net.layout.size} values (one per parameter), got shape {a.shape} of {a.dtype}")
        if not np.isfinite(a).all():
            raise ModelFormatError(f"{path}: optimizer state {key!r} contains NaN or inf")
        with np.errstate(over="ignore"):  # an overflow is refused just below, with the file's name
            cast[key] = a.astype(net.dtype)
        if not np.isfinite(cast[key]).all():
            raise ModelFormatError(f"{path}: optimizer state {key!r} is finite as {a.dtype.name} but overflows "
                                   f"{net.dtype.name}; load it with dtype='float64'")
    state = OptimizerState(optimizer.describe(), cast, step)
    try:
        state.check(net.layout.size, net.dtype)
    except ValueError as exc:
        raise ModelFormatError(f"{path}: invalid {exc}") from None
    return state


def _json(path, text, what):
    """``json.loads(text)``; any failure is a :class:`ModelFormatError` naming ``path``."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        # ValueError beyond JSONDecodeError: Python refuses integers of more than
        # 4,300 digits (sys.set_int_max_str_digits) while parsing.
        raise ModelFormatError(f"{path}: {what} ({exc})") from None


def _check_cast(path, net, saved_dtype) -> None:
    """Refuse parameters that were finite as saved but overflow the network's dtype."""
    if not np.isfinite(net.params).all():
        first = int(np.argmax(~np.isfinite(net.params)))
        raise ModelFormatError(
            f"{path}: parameter {first} is finite as {np.dtype(saved_dtype).name} but overflows "
            f"{net.dtype.name} (|value| > {np.finfo(net.dtype).max:.3g}); load it with dtype='float64'")


HISTORY_COLUMNS = ("epoch", "seconds")  # what every history written by fit holds


def _history(path, text) -> pd.DataFrame:
    """The saved training history, checked: ``fit`` continues its epochs from the last one."""
    try:
        history = pd.read_csv(io.StringIO(text))
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ModelFormatError(f"{path}: corrupted training history ({exc})") from None
    missing = [c for c in HISTORY_COLUMNS if c not in history.columns]
    if missing:
        raise ModelFormatError(f"{path}: corrupted training history (no {', '.join(missing)} column)")
    epochs = history["epoch"]
    if epochs.dtype.kind not in "iu" or (epochs < 1).any() or not (epochs.diff().dropna() > 0).all():
        raise ModelFormatError(
            f"{path}: corrupted training history (epochs must be increasing whole numbers >= 1, "
            f"got {list(epochs[:5])}{' ...' if len(epochs) > 5 else ''})")
    return history


def _text(path, array, name) -> str:
    """A 0-d string array (how ``np.savez`` stores ``np.array(str)``) as text."""
    if array.shape != () or array.dtype.kind != "U":
        raise ModelFormatError(f"{path}: {name} must be a text scalar, got shape {array.shape} of {array.dtype}")
    return str(array)


def _load_network2(path, dtype, build):
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ModelFormatError(f"{path}: not valid JSON, so not a network2 model ({exc})") from None
    data = _json(path, text, "not valid JSON, so not a network2 model")
    if not isinstance(data, dict) or not {"sizes", "weights", "biases", "cost"} <= set(data):
        raise ModelFormatError(f"{path}: JSON but not a network2 model (needs sizes, weights, biases, cost)")
    cost = data["cost"]
    if not isinstance(cost, str) or cost not in NETWORK2_COSTS:
        raise ModelFormatError(f"{path}: unknown network2 cost {cost!r}; expected one of {sorted(NETWORK2_COSTS)}")
    sizes = _checked_sizes(path, data["sizes"])
    weights, biases = data["weights"], data["biases"]
    if not isinstance(weights, list) or not isinstance(biases, list) or not (
            len(weights) == len(biases) == len(sizes) - 1):
        raise ModelFormatError(f"{path}: sizes {list(sizes)} do not match the number of weight matrices")
    # Shapes are checked on arrays built from the file (bounded by its size)
    # before the network is allocated from the sizes the file claims.
    weights = [_numbers(path, w, f"layer {l} weights") for l, w in enumerate(weights)]
    biases = [_numbers(path, b, f"layer {l} biases") for l, b in enumerate(biases)]
    for l, (w, b) in enumerate(zip(weights, biases)):
        n_in, n_out = sizes[l], sizes[l + 1]
        if w.shape != (n_out, n_in) or b.shape not in ((n_out, 1), (n_out,)):
            raise ModelFormatError(
                f"{path}: layer {l}: sizes {list(sizes)} need weights ({n_out}, {n_in}) and biases ({n_out}, 1), "
                f"got {w.shape} and {b.shape}")
        if not (np.isfinite(w).all() and np.isfinite(b).all()):
            raise ModelFormatError(f"{path}: layer {l}: parameters contain NaN or inf")
    try:
        net = build(sizes, cost=NETWORK2_COSTS[cost], init="gaussian", dtype=dtype or "float64")
        with np.errstate(over="ignore"):  # an overflow is refused just below, with the file's name
            net.params[...] = net.layout.pack(weights, biases, net.dtype)
    except (ValueError, TypeError) as exc:
        raise ModelFormatError(f"{path}: inconsistent network2 model ({exc})") from None
    _check_cast(path, net, np.float64)
    return net


def _numbers(path, nested, what) -> np.ndarray:
    """A nested list of JSON numbers as float64; booleans and strings are refused, not converted.

    numpy would read ``"1"`` and ``true`` as 1.0: a file holding them was not
    written by ``network2.save`` and is not trusted to mean numbers.
    """
    stack = [nested]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, bool) or not isinstance(item, (int, float)):
            shown = repr(item) if len(repr(item)) <= 40 else repr(item)[:37] + "..."
            raise ModelFormatError(f"{path}: {what} must be nested lists of numbers, found {shown}")
    try:
        return np.asarray(nested, dtype=np.float64)
    except (ValueError, TypeError, OverflowError) as exc:  # ragged lists, an int beyond float64
        raise ModelFormatError(f"{path}: {what} must be nested lists of numbers ({exc})") from None


def _jsonable(state):
    """numpy's bit-generator state with numpy ints turned into Python ints."""
    if isinstance(state, dict):
        return {k: _jsonable(v) for k, v in state.items()}
    if isinstance(state, (np.integer,)):
        return int(state)
    if isinstance(state, np.ndarray):
        return state.tolist()
    return state
