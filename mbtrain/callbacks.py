"""Things that watch training after each epoch: callbacks and early stopping.

A callback is any callable ``callback(net, history) -> bool | None`` called after
every epoch with the network and the history so far (a DataFrame); returning
True stops training after that epoch.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class EarlyStopping:
    """Stop when validation accuracy has not improved for ``patience`` epochs.

    Parameters
    ----------
    patience : int
        Epochs without a new best ``val_accuracy`` (by more than ``min_delta``)
        before stopping.
    restore_best : bool
        Put back the parameters (and the optimizer state) of the best epoch
        when training stops (early or at the last epoch).
    min_delta : float
        The smallest increase that counts as an improvement.

    After training, ``best_epoch`` and ``best_accuracy`` say what was kept and
    ``stopped_epoch`` when training stopped early (None otherwise).
    """

    patience: int = 5
    restore_best: bool = True
    min_delta: float = 0.0
    best_epoch: int | None = field(default=None, init=False)
    best_accuracy: float = field(default=-np.inf, init=False)
    stopped_epoch: int | None = field(default=None, init=False)
    _best_params: np.ndarray | None = field(default=None, init=False, repr=False)
    _best_state: object = field(default=None, init=False, repr=False)
    _waited: int = field(default=0, init=False, repr=False)

    def __post_init__(self):
        if isinstance(self.patience, bool) or not isinstance(self.patience, int) or self.patience < 1:
            raise ValueError(f"early_stopping: patience must be an integer >= 1, got {self.patience!r}")

    def reset(self) -> None:
        self.best_epoch, self.best_accuracy, self.stopped_epoch = None, -np.inf, None
        self._best_params, self._best_state, self._waited = None, None, 0

    def __call__(self, net, history) -> bool:
        if "val_accuracy" not in history:
            raise ValueError("early_stopping: needs validation_data (and monitor=True) to watch val_accuracy")
        row = history.iloc[-1]
        if row["val_accuracy"] > self.best_accuracy + self.min_delta:
            self.best_accuracy = float(row["val_accuracy"])
            self.best_epoch = int(row["epoch"])
            self._best_params = net.params.copy()
            state = getattr(net, "optimizer_state", None)
            self._best_state = None if state is None else state.copy()
            self._waited = 0
            return False
        self._waited += 1
        if self._waited >= self.patience:
            self.stopped_epoch = int(row["epoch"])
            return True
        return False

    def finish(self, net) -> bool:
        """Called once when training ends: restore the best parameters if asked.

        Returns True when that changed the network's parameters (``fit`` then
        rewrites its checkpoint). Only finite parameters are ever put back.
        """
        best = self._best_params
        if not self.restore_best or best is None or not np.isfinite(best).all():
            return False
        if np.array_equal(net.params, best):
            return False
        net.params[...] = best
        if hasattr(net, "optimizer_state"):
            net.optimizer_state = self._best_state
        return True


class ScoreWatch:
    """Per-epoch callback: ``score(net)`` (higher is better), patience, and the best parameters.

    Stops after ``patience`` epochs without a better score; ``scores`` has every
    epoch's, ``best_params`` and ``best_state`` copies of the parameters and
    the optimizer state of the best (the caller decides whether to put them
    back). Used by :mod:`mbtrain.sklearn`'s early stopping.
    """

    def __init__(self, score, patience):
        self.score, self.patience = score, patience
        self.scores, self.best_score, self.best_params, self.best_state, self._waited = [], -np.inf, None, None, 0

    def __call__(self, net, history) -> bool:
        score = self.score(net)
        self.scores.append(score)
        if score > self.best_score:
            self.best_score, self.best_params, self._waited = score, net.params.copy(), 0
            state = getattr(net, "optimizer_state", None)
            self.best_state = None if state is None else state.copy()
            return False
        self._waited += 1
        return self._waited >= self.patience
