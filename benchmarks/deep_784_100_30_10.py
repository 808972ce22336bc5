"""Two hidden layers: [784, 100, 30, 10], cross-entropy, scaled init, eta 0.5.

Throughput of every arm at batch sizes 1..1000 in float32 (one thread each):
the numba backend's kernels are not specialised to one hidden layer. Writes
benchmarks/results/deep_784_100_30_10/.

    python benchmarks/deep_784_100_30_10.py            # the published run
    python benchmarks/deep_784_100_30_10.py --quick    # smoke run
"""
import sys

from _publish import run

NET = ["--sizes", "784,100,30,10", "--cost", "cross_entropy", "--init", "scaled", "--eta", "0.5"]

if __name__ == "__main__":
    sys.exit(run(
        "deep_784_100_30_10", __doc__,
        bench_args=[*NET, "--batch-sizes", "1,10,100,1000", "--dtype", "float32", "--repeats", "5"],
        more_benches={"bench_2threads": [*NET, "--batch-sizes", "1,10,100,1000", "--dtype", "float32",
                                         "--arms", "numpy,numba,torch", "--threads", "2", "--repeats", "5"]},
        sweeps={},
    ))
