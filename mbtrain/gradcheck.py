"""Gradient checking by central differences, for mbtrain's backprop or yours.

The check runs on a float64 copy of the network (float32 central differences
cannot resolve a gradient to useful precision). Each parameter is perturbed
and the loss :meth:`Network.loss` re-evaluated with the five-point central
difference ``(-L(+2e) + 8 L(+e) - 8 L(-e) + L(-2e)) / (12 e)``, whose error is
O(e^4): far below the tolerance, so a failed check means a wrong gradient,
not a noisy reference.

The error of one entry is ``|g - n| / max(|g|, |n|, floor)`` with ``floor``
1e-5: relative for ordinary entries, absolute (times 1e5) for entries too
small for a relative comparison to be meaningful.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import _validation as v

DEFAULT_TOLERANCE = 1e-6
_FLOOR = 1e-5


@dataclass
class GradcheckResult:
    """Outcome of :func:`gradcheck`.

    Attributes
    ----------
    ok : bool
        True when every layer and group is within ``tolerance``.
    table : pandas.DataFrame
        One row per layer and parameter group: ``layer`` (index into
        ``net.weights``), ``group`` (``"weights"`` or ``"biases"``),
        ``max_rel_error``, ``ok``, and where the worst entry is (``worst_index``,
        ``analytic``, ``numeric``).
    tolerance : float
    """

    ok: bool
    table: pd.DataFrame
    tolerance: float

    @property
    def failures(self) -> pd.DataFrame:
        """The rows of ``table`` that failed."""
        return self.table[~self.table["ok"]]

    def __str__(self) -> str:
        verdict = "OK" if self.ok else "FAILED: " + ", ".join(
            f"layer {r.layer} {r.group}" for r in self.failures.itertuples())
        return f"{self.table.to_string(index=False)}\ngradcheck {verdict} (tolerance {self.tolerance:g})"


def _numeric_gradient(net, X, Y, lmbda, n, eps, indices):
    flat = net.params
    out = np.empty(len(indices))
    for k, i in enumerate(indices):
        original = flat[i]
        values = []
        for step in (2 * eps, eps, -eps, -2 * eps):
            flat[i] = original + step
            values.append(net.loss(X, Y, lmbda, n))
        flat[i] = original
        out[k] = (-values[0] + 8 * values[1] - 8 * values[2] + values[3]) / (12 * eps)
    return out


def _user_gradients(gradients, net, X, Y):
    result = gradients(net, X, Y)
    try:
        grad_w, grad_b = result
    except (TypeError, ValueError):
        raise TypeError("gradients: the callable must return (grad_weights, grad_biases)") from None
    if len(grad_w) != net.layout.n_layers or len(grad_b) != net.layout.n_layers:
        raise ValueError(
            f"gradients: expected {net.layout.n_layers} weight and bias gradients, "
            f"got {len(grad_w)} and {len(grad_b)}")
    for l, (g, w) in enumerate(zip(grad_w, net.weights)):
        if np.shape(g) != w.shape:
            raise ValueError(f"gradients: grad_weights[{l}] has shape {np.shape(g)}, expected {w.shape}")
    # the book's (n, 1) bias columns are accepted
    grad_b = [np.reshape(g, -1) if np.shape(g) == (b.shape[0], 1) else g for g, b in zip(grad_b, net.biases)]
    for l, (g, b) in enumerate(zip(grad_b, net.biases)):
        if np.shape(g) != b.shape:
            raise ValueError(f"gradients: grad_biases[{l}] has shape {np.shape(g)}, expected {b.shape}")
    return net.layout.pack(grad_w, grad_b, np.float64)


def gradcheck(net, X, Y, lmbda=0.0, eps=None, gradients=None, n=None, backend="numba",
              tolerance=DEFAULT_TOLERANCE, max_checks=None, seed=0) -> GradcheckResult:
    """Compare an analytic gradient with central differences of ``net.loss``.

    Parameters
    ----------
    net : Network
        Not modified; the check runs on a float64 copy.
    X : array (m, n_features); Y : labels (m,) or targets (m, k)
        Keep ``m`` small (a handful of rows): every parameter costs four loss
        evaluations.
    lmbda : float
        L2 strength included in the loss (and so expected in the gradient).
    eps : float, optional
        Step of the central difference, default 1e-3.
    gradients : callable ``(net, X, Y) -> (grad_weights, grad_biases)``, optional
        Your own backprop, to be checked. It receives the float64 copy of the
        network and float64 ``X`` and ``Y`` (``Y`` one-hot); it must return the
        gradient of ``net.loss(X, Y, lmbda)``, i.e. averaged over the rows.
        Bias gradients may be ``(n, 1)`` columns as in the book. Default: the
        ``backend``'s own :meth:`Network.gradients`.
    n : int, optional
        Number of training rows for the L2 term, as in :meth:`Network.loss`.
    tolerance : float
        Largest acceptable error per entry.
    max_checks : int, optional
        Check at most this many randomly chosen entries per layer and group
        (all by default).
    seed : int
        Chooses the entries when ``max_checks`` is set.
    """
    net64 = net.astype("float64")
    X = net64._check_X(X)
    Y = net64._check_targets(X, Y, name="Y")
    lmbda = v.check_nonnegative_float(lmbda, "lmbda")
    n = X.shape[0] if n is None else v.check_positive_int(n, "n")
    eps = 1e-3 if eps is None else v.check_positive_float(eps, "eps")
    tolerance = v.check_positive_float(tolerance, "tolerance")
    if gradients is None:
        grad_w, grad_b = net64.gradients(X, Y, lmbda=lmbda, n=n, backend=backend)
        analytic = net64.layout.pack(grad_w, grad_b, np.float64)
    else:
        if not callable(gradients):
            raise TypeError(f"gradients: expected a callable (net, X, Y) -> (grad_w, grad_b), got {gradients!r}")
        analytic = _user_gradients(gradients, net64, X.copy(), Y.copy())
    rng = np.random.default_rng(seed)
    layout = net64.layout
    rows = []
    for l in range(layout.n_layers):
        n_out, n_in = layout.sizes[l + 1], layout.sizes[l]
        groups = (("weights", layout.weight_offsets[l], n_out * n_in),
                  ("biases", layout.bias_offsets[l], n_out))
        for group, offset, count in groups:
            indices = np.arange(offset, offset + count)
            if max_checks is not None and count > max_checks:
                indices = np.sort(rng.choice(indices, size=max_checks, replace=False))
            numeric = _numeric_gradient(net64, X, Y, lmbda, n, eps, indices)
            g = analytic[indices]
            err = np.abs(g - numeric) / np.maximum(np.maximum(np.abs(g), np.abs(numeric)), _FLOOR)
            err = np.where(np.isfinite(err), err, np.inf)
            worst = int(np.argmax(err))
            rows.append({
                "layer": l, "group": group, "max_rel_error": float(err[worst]),
                "ok": bool(err[worst] <= tolerance), "checked": len(indices),
                "worst_index": np.unravel_index(indices[worst] - offset, (n_out, n_in) if group == "weights" else (n_out,)),
                "analytic": float(g[worst]), "numeric": float(numeric[worst]),
            })
    table = pd.DataFrame(rows)
    return GradcheckResult(ok=bool(table["ok"].all()), table=table, tolerance=tolerance)
