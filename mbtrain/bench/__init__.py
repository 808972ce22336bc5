"""Benchmark harness and batch-size sweeps: ``mbtrain bench``, ``mbtrain sweep``, ``mbtrain report``.

Modules, one concern each (the pipeline: measure -> results.csv -> report):

- :mod:`~mbtrain.bench.floor`: FLOPs and bytes of an epoch; the GEMM rate and bandwidth measured here, the
  floor at the higher of the GEMM rate and :mod:`~mbtrain.bench.peak`'s (an FMA probe compiled for this CPU);
- :mod:`~mbtrain.bench.arms`: the arms (``loop``, ``numpy``, ``numba``, peers ``torch``, ``sklearn``), a registry;
- :mod:`~mbtrain.bench.throughput`: ``bench``: check every arm against the loop, compile, time;
- :mod:`~mbtrain.bench.sweep`: ``sweep``: time to a target accuracy across optimizers, batch sizes and etas,
  each run by :mod:`~mbtrain.bench.trial`;
- :mod:`~mbtrain.bench.noise`: the gradient noise scale B_simple (McCandlish et al. 2018);
- :mod:`~mbtrain.bench.results`: the CSV schema, rows appended and flushed as measured;
- :mod:`~mbtrain.bench.machine`: machine.json (CPU, vector ISA, BLAS kernel and variables) and consistent
  thread counts;
- :mod:`~mbtrain.bench.report`: report.md and plots from results.csv and machine.json alone, put together
  from :mod:`~mbtrain.bench.summaries` (the numbers, as DataFrames), :mod:`~mbtrain.bench.comparison`
  (like with like), :mod:`~mbtrain.bench.markdown`, :mod:`~mbtrain.bench.sections` and
  :mod:`~mbtrain.bench.side_by_side` (the text: optimizers side by side and Zhang et al.'s finding) and
  :mod:`~mbtrain.bench.plots`;
- :mod:`~mbtrain.bench.data`: the data set of a run and the sizes that fit it;
- :mod:`~mbtrain.bench.cli`: the three subcommands.
"""
from .arms import ARMS, Arm, get_arm, register_arm
from .floor import Floor, epoch_bytes, epoch_flops, measure_floor
from .noise import gradient_noise_scale, noise_scale_from_moments, noise_scale_from_samples
from .report import write_report
from .results import COLUMNS, ResultsWriter, read_results
from .sweep import etas_for, sweep, train_to_target
from .throughput import RunResult, bench, update_error

__all__ = [
    "ARMS", "Arm", "COLUMNS", "Floor", "ResultsWriter", "RunResult", "bench", "epoch_bytes", "epoch_flops",
    "etas_for", "get_arm", "gradient_noise_scale", "measure_floor", "noise_scale_from_moments",
    "noise_scale_from_samples", "read_results", "register_arm", "sweep", "train_to_target", "update_error",
    "write_report",
]
