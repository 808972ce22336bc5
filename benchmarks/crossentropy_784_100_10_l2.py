"""The book's chapter-3 network: [784, 100, 10], cross-entropy, scaled init, eta 0.5, L2 lmbda 5.0.

Throughput of every arm (the L2 rule included: w <- (1 - eta*lmbda/n) w - ...),
then the time to 85 % validation accuracy across batch sizes with eta scaled
by the square root of the batch size from the book's batch of 10. Writes
benchmarks/results/crossentropy_784_100_10_l2/.

    python benchmarks/crossentropy_784_100_10_l2.py           # the published run (long)
    python benchmarks/crossentropy_784_100_10_l2.py --quick   # smoke run
"""
import sys

from _publish import run

NET = ["--sizes", "784,100,10", "--cost", "cross_entropy", "--init", "scaled", "--eta", "0.5", "--lmbda", "5.0"]

if __name__ == "__main__":
    sys.exit(run(
        "crossentropy_784_100_10_l2", __doc__,
        bench_args=[*NET, "--batch-sizes", "1,10,100,1000", "--dtype", "float32,float64", "--repeats", "5"],
        more_benches={"bench_2threads": [*NET, "--batch-sizes", "1,10,100,1000", "--dtype", "float32",
                                         "--arms", "numpy,numba,torch", "--threads", "2", "--repeats", "5"]},
        sweeps={
            "sweep_sqrt_eta": [*NET, "--target", "0.85", "--max-epochs", "30", "--eta-policy", "sqrt",
                               "--ref-batch-size", "10", "--seeds", "3"],
        },
    ))
