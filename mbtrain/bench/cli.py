"""``mbtrain bench``, ``mbtrain sweep`` and ``mbtrain report``."""
from __future__ import annotations

import argparse
import contextlib
import datetime
import shlex
import signal
import sys
import time
from pathlib import Path

from ..commands import _args
from ..commands._data import add_data_arguments, check_data_options, resolve_sizes
from ..commands.train import OPTIMIZER_HELP, add_optimizer_arguments, optimizer_from_args
from ..optim import OPTIMIZERS
from .data import DATASETS, load_data, load_file_data
from .report import write_report
from .sweep import sweep
from .throughput import bench

BENCH_EXAMPLE = """example:
  mbtrain bench --quick
  mbtrain bench --dataset fashion-mnist --sizes 784,30,10 --batch-sizes 1,10,100,1000 --repeats 5
  mbtrain bench --quick --optimizer adam --eta 0.001      # every arm trains with Adam
  mbtrain bench --data my.csv --label-column -1 --batch-sizes 1,10,100   # your own data

Every arm is first checked against the loop reference on one mini-batch, then
timed, one measurement at a time (timings taken side by side would lie);
results.csv, machine.json, report.md and plots go to --out. A run that was
killed or interrupted continues with the same command plus --resume: what is
already in results.csv is not measured again (the settings and the data must
be the same). One run at a time writes a folder."""

SWEEP_EXAMPLE = """example:
  mbtrain sweep --quick
  mbtrain sweep --dataset fashion-mnist --target 0.85 --eta-policy grid --seeds 3
  mbtrain sweep --quick --optimizers sgd,momentum,adam --eta 3.0,0.3,0.01   # one eta per optimizer
  mbtrain sweep --quick --jobs 2 --out results/sweep       # two runs at once (joblib)
  mbtrain sweep --quick --scheduler tcp://10.0.0.5:8786    # on a Dask cluster
  mbtrain sweep --quick --out results/sweep --resume       # continue a killed sweep
  mbtrain sweep --data my.csv --label-column -1 --target 0.9 --seeds 2   # your own data

results.csv, machine.json, report.md and plots go to --out; one run at a time
writes a folder. With --resume, runs already finished in --out/results.csv are
skipped (the settings and the data must be the same; a run cut short is redone,
a half-written last line dropped). With --jobs or --scheduler the runs execute
in worker processes and this process alone writes results.csv; their seconds
are wall time shared with the other runs, which the report and the executor/jobs
columns say (and how many workers there were). Wherever a run goes, it compiles
the kernels it needs, or loads them from numba's cache, before its clock starts:
seconds to target never include compiling (compile_seconds holds it). With
several --optimizers, the report sets them side by side (steps to target per
batch size, the largest batch size that still scales for each) and says
whether the run agrees with Zhang et al. (2019): momentum and Adam extend
perfect scaling to larger batch sizes than plain SGD."""

REPORT_EXAMPLE = """example:
  mbtrain report mbtrain-results/bench-20250101-120000
  mbtrain report new_results --compare old_results"""


# What --quick changes, and the defaults otherwise: an option given explicitly always wins over both.
DEFAULTS = {"bench": dict(dataset="auto", repeats=5, max_epoch_seconds=1.0, dtype="float32,float64",
                          batch_sizes="1,10,100,1000"),
            "sweep": dict(dataset="auto", seeds=3)}
# --quick is the README's first command: float32 alone halves the kernels a cold cache compiles
QUICK = {"bench": dict(dataset="digits", repeats=3, max_epoch_seconds=0.3, dtype="float32",
                        batch_sizes="1,10,100"),  # batch 1000 is most of digits' 1,247 rows: nothing to add
         "sweep": dict(dataset="digits", seeds=2)}
DEFAULT_SIZES = [784, 30, 10]


def _str_list(text):
    values = [part.strip() for part in text.split(",") if part.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return values


def _float_list(text):
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers like 0.5,1,2, got {text!r}") from None
    if not values or any(not v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive numbers like 0.5,1,2, got {text!r}")
    return values


def _batch_sizes(text):
    return _args.int_list(text, what="batch sizes", positive="batch sizes >= 1", example="1,10,100")


def _jobs(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of jobs like 2, or -1 for one per core, got {text!r}") from None
    if value == 0 or value < -1:
        raise argparse.ArgumentTypeError(f"expected a number of jobs >= 1, or -1 for one per core, got {text!r}")
    return value


def _fraction(text):
    value = _args.positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"expected an accuracy in (0, 1], got {text!r}")
    return value


def _optimizer_list(text):
    names = _str_list(text)
    unknown = [name for name in names if name not in OPTIMIZERS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown optimizer {unknown[0]!r}; choose from {','.join(OPTIMIZERS)}, "
                                         f"comma-separated, got {text!r}")
    if len(set(names)) < len(names):
        raise argparse.ArgumentTypeError(f"each optimizer once, got {text!r}")
    return names


def _preset_help(command, key, text):
    return f"{text} (default: {DEFAULTS[command][key]}; with --quick: {QUICK[command][key]})"


def _common(p, command):
    p.add_argument("--dataset", default=None, choices=DATASETS,
                   help="data set; auto: Fashion-MNIST when installed, else the shipped 8x8 digits "
                        "(default: auto; with --quick: digits)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="directory holding the fashion-mnist or mnist IDX files, read from there and nowhere "
                        "else (with --dataset auto: Fashion-MNIST)")
    add_data_arguments(p, command)
    p.add_argument("--train-rows", type=_args.positive_int, default=None,
                   help="use only this many training rows (random subset; default: all)")
    p.add_argument("--sizes", type=_args.sizes, default=None,
                   help="layer widths; they must fit the data (first: its features, last: its classes) "
                        "(default: 784,30,10 with the first and last set to the data's)")
    p.add_argument("--cost", default="quadratic", help="quadratic, cross_entropy or softmax")
    p.add_argument("--init", default="gaussian", help="gaussian or scaled")
    p.add_argument("--lmbda", type=_args.nonnegative_float, default=0.0, help="L2 strength (book's rule)")
    p.add_argument("--threads", type=_args.positive_int, default=1,
                   help="threads for BLAS, numba and torch alike; 1 compares arms per core (several "
                        "spin-waiting thread pools in one process slow each other down on small machines)")
    p.add_argument("--out", type=Path, default=None,
                   help=f"result folder (default: mbtrain-results/{command}-TIMESTAMP)")
    p.add_argument("--quick", action="store_true",
                   help="a reduced run that finishes in under a minute; options given explicitly still apply")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (it is off anyway when not a tty)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out (which must be given): skip what its results.csv already "
                        "holds (the same settings and data are required); without it an existing results.csv is "
                        "replaced")


def register(subparsers) -> None:
    p = subparsers.add_parser("bench", help="throughput of every arm against the hardware floor",
                              description="Throughput of the loop, numpy and numba backends (and PyTorch and\n"
                                          "scikit-learn as peers, where installed) per batch size and dtype,\n"
                                          "each checked against the loop reference first.",
                              epilog=BENCH_EXAMPLE, formatter_class=_args.Formatter)
    _common(p, "bench")
    p.add_argument("--batch-sizes", type=_batch_sizes, default=None,
                   help=_preset_help("bench", "batch_sizes", "mini-batch sizes to time, comma-separated"))
    p.add_argument("--arms", type=_str_list, default=["loop", "numpy", "numba", "torch", "sklearn"],
                   help="arms to run; peers that are not installed are reported and skipped")
    p.add_argument("--dtype", type=_str_list, default=None,
                   help=_preset_help("bench", "dtype", "dtypes, comma-separated"))
    p.add_argument("--repeats", type=_args.positive_int, default=None,
                   help=_preset_help("bench", "repeats", "timed epochs per measurement"))
    p.add_argument("--max-epoch-seconds", type=_args.positive_float, default=None,
                   help=_preset_help("bench", "max_epoch_seconds",
                                     "arms slower than this per epoch are timed on a subset of rows and scaled"))
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights and the batch order")
    p.add_argument("--eta", type=_args.positive_float, default=3.0, help="learning rate of every arm")
    p.add_argument("--optimizer", default="sgd", choices=list(OPTIMIZERS),
                   help=OPTIMIZER_HELP + "; every arm trains with it (PyTorch with the matching torch.optim, "
                                         "scikit-learn with its solver) and is checked against the loop running it")
    add_optimizer_arguments(p)
    p.set_defaults(func=run_bench)

    p = subparsers.add_parser("sweep", help="time to a target accuracy across batch sizes",
                              description="Train to a target validation accuracy for each optimizer, batch size,\n"
                                          "eta and seed; report epochs, steps and seconds to target and the\n"
                                          "gradient noise scale.",
                              epilog=SWEEP_EXAMPLE, formatter_class=_args.Formatter)
    _common(p, "sweep")
    p.add_argument("--batch-sizes", type=_batch_sizes, default=[1, 2, 5, 10, 20, 50, 100, 200, 500, 1000],
                   help="mini-batch sizes to train with, comma-separated")
    p.add_argument("--target", type=_fraction, default=0.85, help="target validation accuracy")
    p.add_argument("--max-epochs", type=_args.positive_int, default=30,
                   help="a run that has not reached the target after this many epochs stops as not reached")
    p.add_argument("--eta-policy", default="fixed", choices=["fixed", "linear", "sqrt", "grid"],
                   help="eta per batch size: fixed, linear or sqrt scaling from --ref-batch-size, or a grid")
    p.add_argument("--ref-batch-size", type=_args.positive_int, default=10,
                   help="the batch size at which --eta applies (linear, sqrt, grid)")
    p.add_argument("--optimizers", type=_optimizer_list, default=["sgd"],
                   help=f"optimizers to sweep, comma-separated, from {','.join(OPTIMIZERS)}: one more axis, each "
                        "with its own eta (see --eta); the report sets them side by side")
    p.add_argument("--eta", type=_float_list, default=None,
                   help="learning rate of each optimizer of --optimizers at --ref-batch-size, comma-separated in "
                        "the same order, e.g. 3.0,0.001 for sgd,adam; the policy scales each from its own "
                        "(default: 3.0 for sgd alone; needed for any other optimizer)")
    add_optimizer_arguments(p, "--optimizers")
    p.add_argument("--eta-grid", type=_float_list, default=[0.25, 0.5, 1.0, 2.0, 4.0],
                   help="grid policy: factors times the sqrt-scaled eta")
    p.add_argument("--seeds", type=_args.positive_int, default=None,
                   help=_preset_help("sweep", "seeds", "seeds 0..N-1"))
    p.add_argument("--evals-per-epoch", type=_args.positive_int, default=4,
                   help="validation accuracy checks per epoch (the resolution of steps to target)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"], help="parameter dtype")
    p.add_argument("--backend", default="numba", help="numba, numpy or loop")
    p.add_argument("--jobs", type=_jobs, default=None,
                   help="runs at once in worker processes (joblib; -1: one per core); 1 (default) runs them here, "
                        "serially; with --scheduler, at most N at once on the cluster (default: one per worker thread)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run on a dask.distributed cluster, e.g. tcp://10.0.0.5:8786")
    p.set_defaults(func=run_sweep)

    p = subparsers.add_parser("report", help="rebuild report.md and plots from a result folder",
                              description="Rebuild report.md and the plots of a bench or sweep folder from its\n"
                                          "results.csv and machine.json alone.",
                              epilog=REPORT_EXAMPLE, formatter_class=_args.Formatter)
    p.add_argument("folder", type=Path, help="a folder written by mbtrain bench or mbtrain sweep")
    p.add_argument("--compare", type=Path, default=None, help="another result folder to compare with")
    p.set_defaults(func=run_report)


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """Treat SIGTERM (``timeout``, a batch scheduler) like Ctrl-C: keep the results, write the report."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _out(args, command):
    if args.out is not None:
        return args.out
    return Path("mbtrain-results") / f"{command}-{datetime.datetime.now():%Y%m%d-%H%M%S}"


def _error(command, exc) -> int:
    message = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())  # one line
    print(f"mbtrain {command}: error: {message}", file=sys.stderr)
    return 2


def _settle(args, command):
    """Fill the options left out from the preset (``--quick``) or the defaults; refuse contradictions."""
    check_data_options(args)
    preset = QUICK[command] if args.quick else DEFAULTS[command]
    for key, value in preset.items():
        if key == "dataset" and args.data is not None:
            continue  # --data instead
        if getattr(args, key) is None:
            # as typed on the command line, parsed as the option's own type would
            setattr(args, key, {"dtype": _str_list, "batch_sizes": _batch_sizes}.get(key, lambda v: v)(value))
    if args.resume and args.out is None:
        raise ValueError("--resume: needs --out, the folder of the run to continue")


def _load(args, command):
    """The data and the sizes of the run; says which data and sizes on stdout.

    An explicit ``--sizes`` must fit the data; only the default adapts to it.
    """
    if args.data is not None:
        data = load_file_data(args.data, args.test_data, args.label_column, args.max_value, dtype="float64",
                              train_rows=args.train_rows)
    else:
        data = load_data(args.dataset, dtype="float64", train_rows=args.train_rows, data_dir=args.data_dir)
    sizes, how = resolve_sizes(args.sizes, data.n_features, data.n_classes, hidden=DEFAULT_SIZES[1:-1],
                               dataset=data.name)
    if args.sizes is None:
        data.note += f"; sizes {','.join(map(str, sizes))}: {how}"
    print(f"mbtrain {command}: data: {data.name}: {data.note}")
    print(f"mbtrain {command}: sizes {','.join(map(str, sizes))} ({how})")
    return data, sizes


def _finish(command, result, started) -> int:
    minutes = (time.perf_counter() - started) / 60
    where = result.out / "report.md"
    if result.interrupted:
        print(f"mbtrain {command}: interrupted after {minutes:.1f} min; what was measured is in "
              f"{result.out}/results.csv and the report in {where}", file=sys.stderr)
        return 130
    print(f"mbtrain {command}: done in {minutes:.1f} min; report: {where}")
    return 0


def _command_line():
    return shlex.join(["mbtrain"] + sys.argv[1:]) if sys.argv[0].endswith("mbtrain") else shlex.join(sys.argv)


def run_bench(args) -> int:
    started = time.perf_counter()
    try:
        _settle(args, "bench")
        optimizer = optimizer_from_args(args)
        data, sizes = _load(args, "bench")
        out = _out(args, "bench")
        print(f"mbtrain bench: writing to {out}")
        with _sigterm_as_interrupt():
            result = bench(data.X_train, data.y_train, sizes, out=out, cost=args.cost, init=args.init, eta=args.eta,
                           optimizer=optimizer,
                           lmbda=args.lmbda, batch_sizes=args.batch_sizes, arms=args.arms, dtypes=args.dtype,
                           repeats=args.repeats, seed=args.seed, threads=args.threads,
                           max_epoch_seconds=args.max_epoch_seconds, dataset=data.name, dataset_note=data.note,
                           data_split=data.split,
                           quick=args.quick, command=_command_line(),
                           progress=False if args.no_progress else None, resume=args.resume)
    except (ValueError, TypeError, OSError) as exc:
        return _error("bench", exc)
    return _finish("bench", result, started)


def run_sweep(args) -> int:
    started = time.perf_counter()
    try:
        _settle(args, "sweep")
        optimizers = _optimizers_from_args(args)
        eta = _sweep_eta(args, optimizers)
        data, sizes = _load(args, "sweep")
        out = _out(args, "sweep")
        print(f"mbtrain sweep: writing to {out}")
        with _sigterm_as_interrupt():
            result = sweep(data, sizes, out=out, cost=args.cost, init=args.init, dtype=args.dtype,
                           batch_sizes=args.batch_sizes, target=args.target, max_epochs=args.max_epochs,
                           eta=eta, optimizers=optimizers, eta_policy=args.eta_policy,
                           ref_batch_size=args.ref_batch_size,
                           grid_factors=args.eta_grid, lmbda=args.lmbda, seeds=args.seeds,
                           evals_per_epoch=args.evals_per_epoch, backend=args.backend, threads=args.threads,
                           quick=args.quick, command=_command_line(),
                           progress=False if args.no_progress else None, resume=args.resume,
                           jobs=args.jobs, scheduler=args.scheduler)
    except (ValueError, TypeError, OSError) as exc:
        return _error("sweep", exc)
    return _finish("sweep", result, started)


#: The options of ``add_optimizer_arguments`` and the optimizers that use them.
HYPERPARAMETER_USERS = {"momentum": ("momentum", "nesterov"), "beta1": ("adam",), "beta2": ("adam",),
                        "epsilon": ("adam",)}


def _optimizers_from_args(args) -> list:
    """The optimizer objects of ``--optimizers``, each with the hyperparameter options that apply to it.

    An option no optimizer of the list uses is refused (it would be ignored silently).
    """
    for option, users in HYPERPARAMETER_USERS.items():
        if getattr(args, option) is not None and not set(users) & set(args.optimizers):
            raise ValueError(f"--{option}: only used by --optimizers {' or '.join(users)}, which "
                             f"{','.join(args.optimizers)} does not include")
    optimizers = []
    for name in args.optimizers:  # through train's helper, with only the options of this optimizer
        own = {option: getattr(args, option) if name in users else None
               for option, users in HYPERPARAMETER_USERS.items()}
        optimizers.append(optimizer_from_args(argparse.Namespace(optimizer=name, **own)))
    return optimizers


def _sweep_eta(args, optimizers):
    """``--eta`` as the sweep takes it: one number, or one per optimizer (there is no shared default)."""
    names = ",".join(o.name for o in optimizers)
    if args.eta is None:
        if names == "sgd":
            return 3.0
        raise ValueError(f"--eta: give the learning rate of each of --optimizers {names}, comma-separated in the "
                         "same order (e.g. --optimizers sgd,adam --eta 3.0,0.001); only plain sgd alone has a "
                         "default (3.0)")
    if len(args.eta) != len(optimizers):
        raise ValueError(f"--eta: {len(args.eta)} learning rate{'s' if len(args.eta) != 1 else ''} for "
                         f"{len(optimizers)} optimizer{'s' if len(optimizers) != 1 else ''} ({names}); give one "
                         "per optimizer, in the order of --optimizers: SGD's and Adam's differ by orders of magnitude")
    return args.eta[0] if len(args.eta) == 1 else args.eta


def run_report(args) -> int:
    try:
        path = write_report(args.folder, compare=args.compare)
    except (ValueError, OSError) as exc:
        return _error("report", exc)
    print(f"mbtrain report: wrote {path}")
    return 0
