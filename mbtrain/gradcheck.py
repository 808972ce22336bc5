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

Layers are numbered from 1, as in the book's equations, Ng's course and
notebook 1: layer ``l`` holds ``W_l = net.weights[l - 1]`` and
``b_l = net.biases[l - 1]``, which take the activations of layer ``l - 1``
(layer 0 is the input ``X``) to layer ``l``; layer ``L`` is the output layer.
So in ``[784, 30, 10]``, ``W1`` is ``(30, 784)``, into the hidden layer, and
``W2`` is ``(10, 30)``, into the output layer. (Nielsen counts the input as his
layer 1, so his ``w^2`` is this ``W1``.)

When a group fails, :mod:`mbtrain.gradcheck_hints` looks for the shapes the
classic mistakes leave and says what the evidence points to; see
:attr:`GradcheckResult.hints`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import _validation as v
from .gradcheck_hints import explain

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
        One row per layer and parameter group: ``layer`` (1 .. L, see the
        module docstring: layer ``l`` is ``net.weights[l - 1]``), ``group``
        (``"weights"`` or ``"biases"``), ``max_rel_error``, ``ok``, how many
        entries were ``checked``, where the worst entry is (``worst_index``
        into that weight matrix or bias vector, ``analytic``, ``numeric``) and a
        short ``hint`` ("" when there is none).
    tolerance : float
    hints : list of str
        Sentences saying what the failures point to (a gradient ``m`` times too
        large, a sign flip, a transposed weight gradient, a regularized bias,
        the output delta of another cost, the layer where the error enters...).
        Empty when the check passes or when the evidence is not clear.
    """

    ok: bool
    table: pd.DataFrame
    tolerance: float
    hints: list[str] = field(default_factory=list)

    @property
    def failures(self) -> pd.DataFrame:
        """The rows of ``table`` that failed."""
        return self.table[~self.table["ok"]]

    def __str__(self) -> str:
        verdict = "OK" if self.ok else "FAILED: " + ", ".join(
            f"layer {r.layer} {r.group}" for r in self.failures.itertuples())
        lines = [self.table.drop(columns="hint", errors="ignore").to_string(index=False)]
        lines += [f"hint: {hint}" for hint in self.hints]
        lines.append(f"gradcheck {verdict} (tolerance {self.tolerance:g})")
        return "\n".join(lines)


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
            transposed = (" — transposed? weights are (n_out, n_in), so dC/dW = delta.T @ a_prev / m"
                          if np.shape(g) == w.shape[::-1] else "")
            raise ValueError(f"gradients: grad_weights[{l}] (layer {l + 1}) has shape {np.shape(g)}, "
                             f"expected {w.shape}{transposed}")
    # the book's (n, 1) bias columns are accepted
    grad_b = [np.reshape(g, -1) if np.shape(g) == (b.shape[0], 1) else g for g, b in zip(grad_b, net.biases)]
    for l, (g, b) in enumerate(zip(grad_b, net.biases)):
        if np.shape(g) != b.shape:
            raise ValueError(f"gradients: grad_biases[{l}] (layer {l + 1}) has shape {np.shape(g)}, "
                             f"expected {b.shape}")
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
        evaluations. Use more than two rows, so that a gradient not divided by
        ``m`` cannot be mistaken for a stray factor of 2.
    lmbda : float
        L2 strength included in the loss (and so expected in the gradient).
    eps : float, optional
        Step of the central difference, default 1e-3.
    gradients : callable ``(net, X, Y) -> (grad_weights, grad_biases)``, optional
        Your own backprop, to be checked. It receives the float64 copy of the
        network and float64 ``X`` and ``Y`` (``Y`` one-hot); it must return the
        gradient of ``net.loss(X, Y, lmbda)``, i.e. averaged over the rows, as
        lists in the order of ``net.weights`` (``grad_weights[0]`` is layer 1's).
        Bias gradients may be ``(n, 1)`` columns as in the book. An exception
        it raises propagates unchanged. Default: the ``backend``'s own
        :meth:`Network.gradients`.
    n : int, optional
        Number of training rows for the L2 term, as in :meth:`Network.loss`.
    tolerance : float
        Largest acceptable error per entry.
    max_checks : int, optional
        Check at most this many randomly chosen entries per layer and group
        (all by default).
    seed : int
        Chooses the entries when ``max_checks`` is set.

    Returns
    -------
    GradcheckResult
        ``ok``, the ``table`` (layers numbered from 1) and the ``hints``.
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
    rows, checked = [], []
    for l in range(layout.n_layers):
        n_out, n_in = layout.sizes[l + 1], layout.sizes[l]
        groups = (("weights", layout.weight_offsets[l], (n_out, n_in)),
                  ("biases", layout.bias_offsets[l], (n_out,)))
        for group, offset, shape in groups:
            count = int(np.prod(shape))
            indices = np.arange(offset, offset + count)
            if max_checks is not None and count > max_checks:
                indices = np.sort(rng.choice(indices, size=max_checks, replace=False))
            numeric = _numeric_gradient(net64, X, Y, lmbda, n, eps, indices)
            g = analytic[indices]
            err = np.abs(g - numeric) / np.maximum(np.maximum(np.abs(g), np.abs(numeric)), _FLOOR)
            err = np.where(np.isfinite(err), err, np.inf)
            worst = int(np.argmax(err))
            rows.append({
                "layer": l + 1, "group": group, "max_rel_error": float(err[worst]),
                "ok": bool(err[worst] <= tolerance), "checked": len(indices),
                "worst_index": np.unravel_index(indices[worst] - offset, shape),
                "analytic": float(g[worst]), "numeric": float(numeric[worst]),
            })
            checked.append((indices - offset, shape, g, numeric))
    table = pd.DataFrame(rows)
    table["hint"], hints = explain(table, checked, net64, X, Y, analytic, lmbda, n)
    return GradcheckResult(ok=bool(table["ok"].all()), table=table, tolerance=tolerance, hints=hints)
