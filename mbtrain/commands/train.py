"""``mbtrain train`` and ``mbtrain evaluate``: train on a data set, evaluate a saved model."""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from .. import Network, TrainingDiverged, TrainingInterrupted, load
from .._atomic import atomic_write
from ..backends import get_backend
from ..optim import OPTIMIZERS, Adam, Momentum, get_optimizer
from ..schedules import SCHEDULES, Book, Cosine, StepDecay
from . import _args
from ._data import (
    DATASET_CHOICES,
    add_data_arguments,
    check_data_options,
    confusion_matrix,
    load_dataset,
    load_file,
    load_test_file,
    resolve_sizes,
    split_text,
    validation_split,
)

TRAIN_EXAMPLE = """examples:
  mbtrain train --dataset digits --sizes 64,30,10 --epochs 10 --batch-size 10 --eta 3.0 --out digits.npz
  mbtrain train --dataset fashion-mnist --sizes 784,100,10 --cost cross_entropy --epochs 10 \\
      --batch-size 10 --eta 0.5 --lmbda 5.0 --out model.npz
  mbtrain train --dataset digits --cost cross_entropy --optimizer adam --eta 0.01 --epochs 20 \\
      --schedule book --schedule-patience 3
  mbtrain train --data my.csv --label-column -1 --epochs 10 --out my-model.npz

The model is saved (atomically) after every epoch, so Ctrl-C keeps the last
completed epoch; its history goes to OUT with the suffix .history.csv, written
after each saved epoch (a history left by an earlier run is removed first).

train_loss and val_loss include the L2 term (lmbda/2n * sum of squared
weights); the test cost printed at the end is the mean cost without it."""

EVALUATE_EXAMPLE = """examples:
  mbtrain evaluate model.npz --dataset fashion-mnist
  mbtrain evaluate my-model.npz --data my.csv --label-column -1   # the rows train held out
  mbtrain evaluate my-model.npz --test-data new.csv                # every row of new.csv"""


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a network and report test accuracy",
                              description="Train a network by mini-batch SGD (or momentum, Nesterov, Adam) "
                                          "on a data set, report test accuracy, save the model and its history.",
                              epilog=TRAIN_EXAMPLE, formatter_class=_args.Formatter)
    p.add_argument("--dataset", choices=DATASET_CHOICES,
                   help="a built-in data set; synthetic is generated blobs (default: synthetic, unless --data)")
    p.add_argument("--data-dir", help="directory searched first for the data set's files (mnist, fashion-mnist); "
                                      "it must exist")
    add_data_arguments(p, "train")
    p.add_argument("--sizes", type=_args.sizes,
                   help="layer widths; must fit the data set (its inputs first, its classes last); "
                        "default: its inputs, 30 hidden, its classes")
    p.add_argument("--cost", default="quadratic", help="quadratic, cross_entropy or softmax")
    p.add_argument("--init", default="gaussian", help="gaussian or scaled")
    p.add_argument("--epochs", type=_args.positive_int, default=5, help="passes over the training rows")
    p.add_argument("--batch-size", type=_args.positive_int, default=10, help="rows per SGD step (mini-batch)")
    p.add_argument("--eta", type=_args.positive_float, default=3.0, help="learning rate")
    p.add_argument("--lmbda", type=_args.nonnegative_float, default=0.0, help="L2 strength")
    p.add_argument("--optimizer", default="sgd", choices=list(OPTIMIZERS), help=OPTIMIZER_HELP)
    add_optimizer_arguments(p)
    p.add_argument("--schedule", default="constant", choices=list(SCHEDULES),
                   help="learning rate per epoch: constant; book (the book's chapter 3: halve eta when validation "
                        "accuracy has not improved for --schedule-patience epochs, stop when it falls below "
                        "eta/128); step (multiply it by --step-factor every --step-every epochs); cosine (from "
                        "eta down to 0 over --epochs); the history's eta column records it")
    p.add_argument("--schedule-patience", type=_args.positive_int, metavar="K",
                   help="epochs without a better validation accuracy before --schedule book halves eta (default: 10)")
    p.add_argument("--step-every", type=_args.positive_int, metavar="N",
                   help="epochs between two steps of --schedule step (default: 10)")
    p.add_argument("--step-factor", type=_args.positive_float, metavar="F",
                   help="what --schedule step multiplies eta by, in (0, 1] (default: 0.5)")
    p.add_argument("--validation", default="auto", type=_validation_spec,
                   help="validation rows held out of the training set: a count, a fraction (a seeded "
                        "random split; stratified by label for --data), 'book' (the last 10,000 rows: views, no "
                        "copy), 0 for none; auto: 'book' for mnist and fashion-mnist, the file's own validation "
                        "part for the book's pickle, 0.1 otherwise")
    p.add_argument("--early-stopping", type=_args.positive_int, metavar="PATIENCE",
                   help="stop when validation accuracy has not improved for PATIENCE epochs")
    p.add_argument("--backend", default="numba", help="loop, numpy or numba")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"), help="parameter and data dtype")
    p.add_argument("--seed", type=int, default=0, help="initialization, validation split and shuffle")
    p.add_argument("--out", type=Path, help="save the model here (.npz); history beside it")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_train)

    e = subparsers.add_parser("evaluate", help="accuracy and confusion matrix of a saved model",
                              description="Evaluate a saved model (mbtrain .npz or the book's network2 "
                                          "JSON) on a data set's test rows.",
                              epilog=EVALUATE_EXAMPLE, formatter_class=_args.Formatter)
    e.add_argument("model", type=Path, help="a saved model")
    e.add_argument("--dataset", choices=DATASET_CHOICES,
                   help="built-in data set whose test rows are used (or give --data or --test-data)")
    e.add_argument("--data-dir", help="directory searched first for the data set's files (mnist, fashion-mnist); "
                                      "it must exist")
    add_data_arguments(e, "evaluate")
    e.add_argument("--seed", type=int, default=0, help="seed of the synthetic data set")
    e.set_defaults(func=run_evaluate)


OPTIMIZER_HELP = ("update rule: sgd (the book's), momentum (v <- mu v + g; w <- w - eta v), nesterov "
                  "(w <- w - eta (g + mu v)) or adam; g includes the L2 term (definitions in mbtrain.optim)")


def add_optimizer_arguments(p, option="--optimizer") -> None:
    """``--momentum``, ``--beta1``, ``--beta2``, ``--epsilon``: the hyperparameters of what ``option`` chooses."""
    p.add_argument("--momentum", type=_args.fraction, metavar="MU",
                   help=f"mu of {option} momentum or nesterov, in [0, 1) (default: 0.9)")
    p.add_argument("--beta1", type=_args.fraction, help="Adam's decay rate of the mean gradient (default: 0.9)")
    p.add_argument("--beta2", type=_args.fraction,
                   help="Adam's decay rate of the mean squared gradient (default: 0.999)")
    p.add_argument("--epsilon", type=_args.positive_float, help="Adam's eps, added to the root mean square "
                                                                "(default: 1e-8)")


def _validation_spec(text: str) -> str:
    if text in ("0", "none", "book", "auto"):
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a count, a fraction, 'book' or 0, got {text!r}") from None
    if not (0 < value < 1 or (value >= 1 and value == int(value))):
        raise argparse.ArgumentTypeError(f"expected a whole count >= 1 or a fraction in (0, 1), got {text!r}")
    return text


def _given(args, options, allowed: bool, which: str) -> None:
    """Refuse an option of another optimizer or schedule than the one chosen: it would be ignored silently."""
    for option in options:
        if getattr(args, option.lstrip("-").replace("-", "_")) is not None and not allowed:
            raise ValueError(f"{option}: only used by {which}")


def _default(value, default):
    return default if value is None else value


def optimizer_from_args(args):
    """The :mod:`mbtrain.optim` object ``--optimizer`` and its hyperparameter options describe."""
    _given(args, ["--momentum"], args.optimizer in ("momentum", "nesterov"), "--optimizer momentum or nesterov")
    _given(args, ["--beta1", "--beta2", "--epsilon"], args.optimizer == "adam", "--optimizer adam")
    if args.optimizer in ("momentum", "nesterov"):
        return Momentum(_default(args.momentum, 0.9), nesterov=args.optimizer == "nesterov")
    if args.optimizer == "adam":
        return Adam(_default(args.beta1, 0.9), _default(args.beta2, 0.999), _default(args.epsilon, 1e-8))
    return get_optimizer(args.optimizer)


def schedule_from_args(args, has_validation: bool):
    """The :mod:`mbtrain.schedules` object (None: constant) of ``--schedule`` and its options."""
    _given(args, ["--schedule-patience"], args.schedule == "book", "--schedule book")
    _given(args, ["--step-every", "--step-factor"], args.schedule == "step", "--schedule step")
    if args.schedule == "book":
        if not has_validation:
            raise ValueError("--schedule book: needs validation rows (--validation must not be 0)")
        return Book(patience=_default(args.schedule_patience, 10))
    if args.schedule == "step":
        factor = _default(args.step_factor, 0.5)
        if factor > 1:
            raise ValueError(f"--step-factor: expected a factor in (0, 1], got {factor}")
        return StepDecay(every=_default(args.step_every, 10), factor=factor)
    if args.schedule == "cosine":
        return Cosine(args.epochs)
    return None


def _fail(command: str, exc: BaseException) -> int:
    message = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())  # one line
    print(f"mbtrain {command}: error: {message}", file=sys.stderr)
    return 2


def history_path(out: Path) -> Path:
    """Where ``mbtrain train --out OUT`` writes the history: ``OUT`` with the suffix ``.history.csv``."""
    return out.with_suffix(".history.csv")


def _check_out(out: Path) -> None:
    """Refuse an ``--out`` that cannot be written before any time is spent training."""
    if out.is_dir():
        raise ValueError(f"--out: {out} is a directory; give a file name such as {out / 'model.npz'}")
    if history_path(out).is_dir():
        raise ValueError(f"--out: the history's name {history_path(out)} is a directory")
    parent = out.parent
    if not parent.exists():
        raise ValueError(f"--out: the directory {parent} does not exist")
    if not parent.is_dir():
        raise ValueError(f"--out: {out}: {parent} is a file, not a directory")


def _remove_stale_history(out: Path) -> None:
    """Delete a history an earlier run left beside ``out``: it must never pass for this run's."""
    with contextlib.suppress(FileNotFoundError):
        history_path(out).unlink()


def _write_history(net, out: Path) -> None:
    """Write ``net.history`` beside ``out``, atomically (the rows of the epochs the model on disk holds)."""
    history = getattr(net, "history", None)
    if history is None or history.empty:
        return
    with atomic_write(history_path(out), "w") as f:
        history.to_csv(f, index=False)


def _load_for_training(args):
    """``(data, name, validation rows, validation note)`` of ``mbtrain train``'s options."""
    if args.data is not None:
        data = load_file(args.data, args.test_data, args.label_column, args.max_value, args.dtype)
        name = args.data.name
    else:
        name = args.dataset or "synthetic"
        n_features = args.sizes[0] if args.sizes else None
        n_classes = args.sizes[-1] if args.sizes else None
        data = load_dataset(name, args.dtype, args.data_dir, n_features, n_classes, seed=args.seed)
    spec, note = args.validation, ""
    if spec == "auto" and data.validation is not None:  # the book's pickle: its own 10,000
        return data, name, data.validation, ", the file's own validation part"
    if data.validation is not None:
        note = f" (the file's own {len(data.validation[1]):,} validation rows unused: --validation {spec})"
    if spec == "auto":
        spec = "book" if name in ("mnist", "fashion-mnist") else "0.1"
    X_fit, y_fit, validation = validation_split(data.X_train, data.y_train, spec, args.seed,
                                                stratified=args.data is not None)
    how = ", stratified by label" if args.data is not None and spec not in ("0", "none", "book") else ""
    data = data._replace(X_train=X_fit, y_train=y_fit, validation=None)  # a random split copied its parts
    return data, name, validation, (f"{how}, seed {args.seed}" if how else "") + note


def run_train(args) -> int:
    try:
        check_data_options(args)
        if args.out is not None:
            _check_out(args.out)
        data, name, validation, validation_note = _load_for_training(args)
        X_fit, y_fit, X_test, y_test, source, _, split = data
        del data
        n_classes = int(max(y_fit.max(), y_test.max(), validation[1].max() if validation else 0)) + 1
        sizes, how_sized = resolve_sizes(args.sizes, X_fit.shape[1], n_classes, dataset=name)
        if args.early_stopping and validation is None:
            raise ValueError("--early-stopping: needs validation rows (--validation must not be 0)")
        optimizer = optimizer_from_args(args)
        schedule = schedule_from_args(args, validation is not None)
        net = Network(sizes, cost=args.cost, init=args.init, dtype=args.dtype, seed=args.seed)
        get_backend(args.backend)  # refused here, before anything on disk is touched
        if args.out is not None:
            _remove_stale_history(args.out)
    except (ValueError, TypeError, OSError) as exc:
        return _fail("train", exc)

    print(f"data: {name} from {source}" if args.data is None else f"data: {source}")
    if args.data is not None:
        print(f"test rows: {split_text(split)}")
    val_note = f", {len(validation[1])} validation rows{validation_note}" if validation else validation_note
    print(f"sizes {','.join(map(str, sizes))} ({how_sized})")
    print(f"training {net} on {len(y_fit)} rows of {name}{val_note}: {args.epochs} epochs, "
          f"batch size {args.batch_size}, eta {args.eta}, lmbda {args.lmbda}, backend {args.backend}, "
          f"optimizer {optimizer!r}, schedule {args.schedule if schedule is None else schedule!r}")
    # After each epoch fit saves the model (checkpoint=), then calls this: the history on disk
    # follows the model on disk epoch by epoch, so a killed run leaves a matching pair.
    callbacks = [] if args.out is None else [lambda net, history: _write_history(net, args.out)]
    try:
        history = net.fit(X_fit, y_fit, epochs=args.epochs, batch_size=args.batch_size, eta=args.eta,
                          lmbda=args.lmbda, backend=args.backend, validation_data=validation,
                          early_stopping=args.early_stopping, checkpoint=args.out, callbacks=callbacks,
                          progress=False if args.quiet else None, optimizer=optimizer, schedule=schedule)
    except TrainingInterrupted as exc:
        if args.out is not None and exc.checkpoint is not None:
            try:  # Ctrl-C may have come between the checkpoint and its history
                _write_history(net, args.out)
            except OSError as error:
                return _fail("train", error)
            print(f"mbtrain train: history of the {exc.epoch} completed epochs in {history_path(args.out)}",
                  file=sys.stderr)
        return 130
    except (TrainingDiverged, ValueError, TypeError, OSError) as exc:
        # OSError: a checkpoint could not be saved (full disk ...); the model and history on
        # disk are those of the last epoch saved.
        return _fail("train", exc)
    shown = [c for c in ("epoch", "eta", "seconds", "train_loss", "train_cost", "train_accuracy",
                         "val_loss", "val_cost", "val_accuracy") if c in history]
    print(history[shown].to_string(index=False, float_format=lambda v: f"{v:.4f}",
                                   formatters={"eta": lambda v: f"{v:.4g}"}))  # a scheduled eta may be tiny
    if args.lmbda:
        print(f"(train_loss, val_loss: the mean cost plus the L2 term lmbda/2n * sum ||W||^2, lmbda {args.lmbda}; "
              "train_cost, val_cost, where shown, and the test cost below: without it)")
    if "schedule_stopped_epoch" in history.attrs:
        print(f"the schedule stopped training after epoch {history.attrs['schedule_stopped_epoch']} "
              f"(eta fell below {args.eta}/128)")
    print(f"compile time {history.attrs['compile_seconds']:.2f} s (apart from the epoch times above)")
    saved = ""
    if args.out is not None:
        try:
            net.save(args.out)  # early stopping may have restored an earlier epoch's parameters
            _write_history(net, args.out)
        except OSError as exc:
            return _fail("train", exc)
        saved = f"; model saved to {args.out}, history to {history_path(args.out)}"
    print(f"test accuracy {net.score(X_test, y_test):.4f}, test cost {net.loss(X_test, y_test):.4f} (mean "
          f"{net.cost.name} cost, no L2 term) on {len(y_test)} test rows of {name}{saved}")
    return 0


def _load_for_evaluation(args, net):
    """``(X_test, y_test, name, source)`` of ``mbtrain evaluate``'s options."""
    if args.data is not None:
        data = load_file(args.data, args.test_data, args.label_column, args.max_value, net.dtype.name)
        return data.X_test, data.y_test, args.data.name, f"{data.source}; test rows: {split_text(data.split)}"
    if args.test_data is not None:
        X_test, y_test, source = load_test_file(args.test_data, net.dtype.name, args.label_column, args.max_value)
        return X_test, y_test, args.test_data.name, f"{source}; every row a test row"
    data = load_dataset(args.dataset, net.dtype.name, args.data_dir, net.sizes[0], net.sizes[-1], seed=args.seed)
    return data.X_test, data.y_test, args.dataset, f"{args.dataset} from {data.source}"


def run_evaluate(args) -> int:
    try:
        check_data_options(args, test_only_allowed=True)
        if args.dataset is None and args.data is None and args.test_data is None:
            raise ValueError("give --dataset, --data or --test-data: the data whose test rows are used")
        net = load(args.model)
        X_test, y_test, name, source = _load_for_evaluation(args, net)
        if X_test.shape[1] != net.sizes[0]:
            raise ValueError(f"{args.model}: the model takes {net.sizes[0]} inputs but {name} rows have "
                             f"{X_test.shape[1]} features")
        if y_test.max() >= net.sizes[-1]:
            raise ValueError(f"{args.model}: the model has {net.sizes[-1]} outputs but {name} has "
                             f"label {int(y_test.max())}")
    except (ValueError, TypeError, OSError) as exc:
        return _fail("evaluate", exc)
    predicted = net.predict(X_test)
    accuracy = float((predicted == y_test).mean())
    print(f"{args.model}: {net}")
    print(f"data: {source}")
    # Named apart from the history's val_loss, which adds the L2 term of training.
    print(f"test accuracy {accuracy:.4f} on {len(y_test)} test rows of {name}; "
          f"test cost {net.loss(X_test, y_test):.4f} (mean {net.cost.name} cost, no L2 term)")
    print("confusion matrix (rows: true class, columns: predicted class):")
    print(confusion_matrix(y_test, predicted, net.sizes[-1]).to_string())
    return 0
