"""Saving and loading networks: mbtrain's ``.npz`` and the book's network2 JSON.

mbtrain format (``format="npz"``): an uncompressed ``.npz`` holding

- ``params``: the flat parameter vector in the network's dtype (layout in
  :mod:`mbtrain.params`);
- ``metadata``: a JSON string with ``format`` ("mbtrain-network"),
  ``format_version``, ``sizes``, ``cost``, ``init``, ``dtype``, the random
  stream's state (so training resumes exactly) and the mbtrain version;
- ``history``: the training history as CSV text (may be empty).

The book's format (``format="network2"``): the JSON of ``network2.Network.save``,
``{"sizes", "weights", "biases", "cost"}`` with biases as ``(n, 1)`` nested lists
and the cost as its class name (``"QuadraticCost"`` or ``"CrossEntropyCost"``).

Every write is atomic (:func:`mbtrain._atomic.atomic_write`); every load checks
what it reads and says what is wrong with a file that is not a valid model.
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from ._atomic import atomic_write

FORMAT_NAME = "mbtrain-network"
FORMAT_VERSION = 1
NETWORK2_COSTS = {"QuadraticCost": "quadratic", "CrossEntropyCost": "cross_entropy"}


class ModelFormatError(ValueError):
    """A file is not a valid saved model; the message says why."""


def save(net, path, format="npz") -> Path:
    """Write ``net`` to ``path`` atomically; returns the path."""
    from . import __version__

    path = Path(path)
    if format == "npz":
        metadata = {
            "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "mbtrain_version": __version__,
            "sizes": list(net.sizes), "cost": net.cost.name, "init": net.init, "dtype": net.dtype.name,
            "rng_state": _jsonable(net.rng.bit_generator.state),
        }
        history = getattr(net, "history", None)
        history_csv = history.to_csv(index=False) if history is not None and not history.empty else ""
        with atomic_write(path, "wb") as f:
            np.savez(f, params=net.params, metadata=np.array(json.dumps(metadata)),
                     history=np.array(history_csv))
    elif format == "network2":
        inverse = {v: k for k, v in NETWORK2_COSTS.items()}
        if net.cost.name not in inverse:
            raise ValueError(
                f"format: the book's network2 format has no {net.cost.name!r} cost; "
                "save it with format='npz'")
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


def load(path, dtype=None):
    """Load a network saved by :func:`save` or by the book's ``network2.save``.

    The format is recognised from the content, not the file name.

    Parameters
    ----------
    path : str or Path
    dtype : {"float32", "float64"}, optional
        Cast the parameters; default: the saved dtype (float64 for network2).

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
        return _load_npz(path, dtype)
    if head.lstrip()[:1] in (b"{", b""):
        return _load_network2(path, dtype)
    raise ModelFormatError(f"{path}: not a saved model (neither an mbtrain .npz nor network2 JSON)")


def _load_npz(path, dtype):
    from .network import Network

    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = {"params", "metadata"} - set(archive.files)
            if missing:
                raise ModelFormatError(f"{path}: an .npz but not an mbtrain model (missing {sorted(missing)})")
            params = archive["params"]
            metadata = json.loads(str(archive["metadata"]))
            history_csv = str(archive["history"]) if "history" in archive.files else ""
    except ModelFormatError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as exc:
        raise ModelFormatError(f"{path}: corrupted or truncated model file ({exc})") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT_NAME:
        raise ModelFormatError(f"{path}: an .npz but not an mbtrain model (no '{FORMAT_NAME}' metadata)")
    if metadata.get("format_version", 0) > FORMAT_VERSION:
        raise ModelFormatError(
            f"{path}: saved by a newer mbtrain (format version {metadata['format_version']}); upgrade mbtrain")
    try:
        net = Network(metadata["sizes"], cost=metadata["cost"], init=metadata.get("init", "gaussian"),
                      dtype=dtype or metadata["dtype"])
    except (KeyError, ValueError, TypeError) as exc:
        raise ModelFormatError(f"{path}: invalid model metadata ({exc})") from None
    if params.shape != (net.layout.size,):
        raise ModelFormatError(
            f"{path}: holds {params.size} parameters but sizes {list(net.sizes)} need {net.layout.size}")
    if not np.isfinite(params).all():
        raise ModelFormatError(f"{path}: parameters contain NaN or inf")
    net.params[...] = params
    if "rng_state" in metadata:
        try:
            net.rng.bit_generator.state = metadata["rng_state"]
        except (TypeError, ValueError, KeyError):
            pass  # a foreign random state: keep a fresh stream
    if history_csv:
        net.history = pd.read_csv(io.StringIO(history_csv))
    return net


def _load_network2(path, dtype):
    from .network import Network

    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFormatError(f"{path}: not valid JSON, so not a network2 model ({exc})") from None
    if not isinstance(data, dict) or not {"sizes", "weights", "biases", "cost"} <= set(data):
        raise ModelFormatError(f"{path}: JSON but not a network2 model (needs sizes, weights, biases, cost)")
    cost = data["cost"]
    if cost not in NETWORK2_COSTS:
        raise ModelFormatError(f"{path}: unknown network2 cost {cost!r}; expected one of {sorted(NETWORK2_COSTS)}")
    if not isinstance(data["weights"], list) or not isinstance(data["biases"], list) or not (
            len(data["weights"]) == len(data["biases"]) == len(data["sizes"]) - 1):
        raise ModelFormatError(f"{path}: sizes {data['sizes']} do not match the number of weight matrices")
    try:
        net = Network(data["sizes"], cost=NETWORK2_COSTS[cost], dtype=dtype or "float64")
        net.params[...] = net.layout.pack([np.asarray(w, dtype=float) for w in data["weights"]],
                                          [np.asarray(b, dtype=float) for b in data["biases"]], net.dtype)
    except (ValueError, TypeError) as exc:
        raise ModelFormatError(f"{path}: inconsistent network2 model ({exc})") from None
    if not np.isfinite(net.params).all():
        raise ModelFormatError(f"{path}: parameters contain NaN or inf")
    return net


def _jsonable(state):
    """numpy's bit-generator state with numpy ints turned into Python ints."""
    if isinstance(state, dict):
        return {k: _jsonable(v) for k, v in state.items()}
    if isinstance(state, (np.integer,)):
        return int(state)
    if isinstance(state, np.ndarray):
        return state.tolist()
    return state
