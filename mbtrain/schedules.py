"""Learning-rate schedules: the eta of each epoch of a ``fit``.

A schedule gives the learning rate of epoch ``epoch`` from the ``eta`` passed
to ``fit`` (``eta0`` here); epochs are counted from 1 in each ``fit`` call, so
a schedule starts over at every call (with the constant schedule, the default,
two calls of 5 epochs are one of 10). The history's ``eta`` column records the
learning rate each epoch used.

- ``"constant"`` (default): ``eta0`` every epoch.
- ``"book"``, :class:`Book`: the book's chapter 3 schedule. Halve eta when
  ``val_accuracy`` has not improved for ``patience`` (default 10) epochs; stop
  when eta falls below ``eta0 / 128``. Needs validation data.
- ``"step"``, :class:`StepDecay`: multiply eta by ``factor`` every ``every``
  epochs (the name: halve every 10).
- ``"cosine"``, :class:`Cosine`: ``torch.optim.lr_scheduler.CosineAnnealingLR``,
  from ``eta0`` down to ``eta_min`` over ``epochs`` epochs (the name: over the
  fit's epochs, to 0), then ``eta_min``.
- a callable ``epoch -> factor``: eta is ``eta0 * factor``; a factor that is
  not a finite number >= 0 is a ``ValueError`` naming ``schedule``, checked
  before the epoch that would use it (epoch 1's before any training).
"""
from __future__ import annotations

import math
import numbers

from . import _validation as v


class Schedule:
    """The protocol the training driver uses; subclasses override what they need."""

    name = ""

    def reset(self) -> None:
        """Forget what an earlier ``fit`` observed (called when a fit starts)."""

    def check(self, eta0: float, has_validation: bool) -> None:
        """Refuse, before any training, a schedule that cannot run (a ``ValueError`` naming ``schedule``)."""

    def eta(self, epoch: int, eta0: float) -> float:
        """The learning rate of ``epoch`` (counted from 1 in this fit)."""
        return eta0

    def observe(self, net, history) -> bool:
        """Called after each epoch, after the callbacks, with this fit's history; True stops training."""
        return False

    def describe(self) -> dict:
        return {"name": self.name}

    def __repr__(self) -> str:
        hyper = ", ".join(f"{k}={value!r}" for k, value in self.describe().items() if k != "name")
        return f"{type(self).__name__}({hyper})"


class Constant(Schedule):
    """``eta0`` at every epoch."""

    name = "constant"


class Book(Schedule):
    """Halve eta when the validation accuracy has not improved for ``patience`` epochs.

    The book's chapter 3 schedule ("no-improvement-in-n", n = 10 by default):
    training stops when eta would fall below ``eta0 / 128``. After a halving
    the count of epochs without improvement starts again.

    Parameters
    ----------
    patience : int >= 1, default 10
    score : callable ``net -> float`` or None
        What must improve (higher is better). None: the history's
        ``val_accuracy``, so ``fit`` needs ``validation_data`` and
        ``monitor=True``. A callable is called after each epoch, after the
        callbacks (the scikit-learn layer passes its validation score).

    After a fit, ``stopped_epoch`` is the epoch after which it stopped (or None).
    """

    name = "book"
    MIN_FACTOR = 1 / 128

    def __init__(self, patience=10, score=None):
        self.patience = v.check_positive_int(patience, "patience")
        if score is not None and not callable(score):
            raise TypeError(f"score: expected a callable net -> float or None, got {score!r}")
        self.score = score
        self.reset()

    def reset(self):
        self.factor, self.best, self.waited, self.stopped_epoch = 1.0, -math.inf, 0, None

    def check(self, eta0, has_validation):
        if self.score is None and not has_validation:
            raise ValueError("schedule: 'book' halves eta when val_accuracy has not improved for "
                             f"{self.patience} epochs, so it needs validation_data and monitor=True")

    def eta(self, epoch, eta0):
        return eta0 * self.factor

    def observe(self, net, history):
        score = float(history["val_accuracy"].iloc[-1] if self.score is None else self.score(net))
        if score > self.best:
            self.best, self.waited = score, 0
            return False
        self.waited += 1
        if self.waited < self.patience:
            return False
        self.factor, self.waited = self.factor / 2, 0
        if self.factor < self.MIN_FACTOR:
            self.stopped_epoch = int(history["epoch"].iloc[-1])
            return True
        return False

    def describe(self):
        return {"name": self.name, "patience": self.patience}


class StepDecay(Schedule):
    """``eta0 * factor ** ((epoch - 1) // every)``: a step down every ``every`` epochs."""

    name = "step"

    def __init__(self, every=10, factor=0.5):
        self.every = v.check_positive_int(every, "every")
        factor = v.check_positive_float(factor, "factor")
        if factor > 1:
            raise ValueError(f"factor: a decay multiplies eta by a factor in (0, 1], got {factor!r}")
        self.factor = factor

    def eta(self, epoch, eta0):
        return eta0 * self.factor ** ((epoch - 1) // self.every)

    def describe(self):
        return {"name": self.name, "every": self.every, "factor": self.factor}


class Cosine(Schedule):
    """Cosine annealing from ``eta0`` to ``eta_min`` over ``epochs`` epochs, then ``eta_min``.

    ``eta_min + (eta0 - eta_min) (1 + cos(pi (epoch - 1) / epochs)) / 2``, as
    ``torch.optim.lr_scheduler.CosineAnnealingLR(T_max=epochs)`` steps it once
    per epoch.
    """

    name = "cosine"

    def __init__(self, epochs, eta_min=0.0):
        self.epochs = v.check_positive_int(epochs, "epochs")
        self.eta_min = v.check_nonnegative_float(eta_min, "eta_min")

    def check(self, eta0, has_validation):
        if self.eta_min > eta0:
            raise ValueError(f"schedule: cosine's eta_min {self.eta_min!r} is above eta {eta0!r}")

    def eta(self, epoch, eta0):
        t = min(epoch - 1, self.epochs)
        return self.eta_min + (eta0 - self.eta_min) * (1 + math.cos(math.pi * t / self.epochs)) / 2

    def describe(self):
        return {"name": self.name, "epochs": self.epochs, "eta_min": self.eta_min}


class Factor(Schedule):
    """``eta0 * function(epoch)``; each factor is checked before its epoch runs."""

    name = "callable"

    def __init__(self, function):
        if not callable(function):
            raise TypeError(f"schedule: expected a callable epoch -> factor, got {function!r}")
        self.function = function

    def check(self, eta0, has_validation):
        self.eta(1, eta0)

    def eta(self, epoch, eta0):
        factor = self.function(epoch)
        if isinstance(factor, bool) or not isinstance(factor, numbers.Real):
            raise TypeError(f"schedule: the callable returned {factor!r} for epoch {epoch}; "
                            "expected a number (the factor of eta)")
        if not (math.isfinite(factor) and factor >= 0):
            raise ValueError(f"schedule: the callable returned {float(factor)!r} for epoch {epoch}; "
                             "a factor of eta must be a finite number >= 0")
        return eta0 * float(factor)

    def describe(self):
        return {"name": self.name, "function": getattr(self.function, "__qualname__", repr(self.function))}


SCHEDULES = ("constant", "book", "step", "cosine")


def get_schedule(spec, epochs=None) -> Schedule:
    """A :class:`Schedule` from None or a name in :data:`SCHEDULES`, a Schedule, or a callable.

    ``epochs`` (the fit's) is the length of the ``"cosine"`` schedule.
    """
    if spec is None or spec == "constant":
        return Constant()
    if isinstance(spec, Schedule):
        return spec
    if spec == "book":
        return Book()
    if spec == "step":
        return StepDecay()
    if spec == "cosine":
        if epochs is None:
            raise ValueError("schedule: 'cosine' needs the number of epochs; use mbtrain.schedules.Cosine(epochs)")
        return Cosine(epochs)
    if callable(spec) and not isinstance(spec, str):
        return Factor(spec)
    raise ValueError(f"schedule: unknown schedule {spec!r}; choose one of {list(SCHEDULES)}, an "
                     "mbtrain.schedules object or a callable epoch -> factor")
