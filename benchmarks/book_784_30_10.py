"""The book's network: [784, 30, 10], quadratic cost, eta 3.0, Gaussian init (chapter 1).

Throughput of every arm at batch sizes 1..1000 in float32 and float64 on one thread
each, then numpy, numba and torch on two threads (bench_2threads/), then the
time to 85 % validation accuracy across batch sizes with the book's fixed eta
and with a per-batch-size eta grid. Writes benchmarks/results/book_784_30_10/.

    python benchmarks/book_784_30_10.py                 # the published run (long)
    python benchmarks/book_784_30_10.py --quick         # smoke run
"""
import sys

from _publish import run

NET = ["--sizes", "784,30,10", "--cost", "quadratic", "--eta", "3.0"]

if __name__ == "__main__":
    sys.exit(run(
        "book_784_30_10", __doc__,
        bench_args=[*NET, "--batch-sizes", "1,10,100,1000", "--dtype", "float32,float64", "--repeats", "5"],
        # the whole machine: every arm on 2 threads (numba's parallel epoch for batches >= 64)
        more_benches={"bench_2threads": [*NET, "--batch-sizes", "1,10,100,1000", "--dtype", "float32",
                                         "--arms", "numpy,numba,torch", "--threads", "2", "--repeats", "5"]},
        sweeps={
            "sweep_fixed_eta": [*NET, "--target", "0.85", "--max-epochs", "30", "--eta-policy", "fixed",
                                "--seeds", "3"],
            "sweep_eta_grid": [*NET, "--target", "0.85", "--max-epochs", "30", "--eta-policy", "grid",
                               "--ref-batch-size", "10", "--seeds", "2"],
        },
    ))
