"""Issue-5 targets, checked against the committed bench results (ratios from one run each).

    python benchmarks/summary.py            # prints a Markdown table

Reads benchmarks/results/*/bench*/results.csv: for every run the median epoch
seconds per arm, batch size and dtype, and the floor measured in that run.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results"


def medians(folder: Path):
    r = pd.read_csv(folder / "results.csv")
    bench = r[r["kind"] == "bench"]
    table = bench.groupby(["dtype", "batch_size", "arm"])["epoch_seconds"].median().unstack("arm")
    floor = r[r["kind"] == "floor"].set_index("dtype")["floor_seconds"]
    return table, floor, r


def ratio(table, dtype, batch, a, b):
    try:
        return float(table.loc[(dtype, batch), a] / table.loc[(dtype, batch), b])
    except KeyError:
        return float("nan")


def main() -> None:
    rows = []
    book = RESULTS / "book_784_30_10" / "bench"
    if (book / "results.csv").exists():
        t, floor, _ = medians(book)
        f32 = "float32"
        rows += [
            ("[784,30,10] f32, batch 1: loop / numba ≥ 20", ratio(t, f32, 1, "loop", "numba"), 20, ">="),
            ("[784,30,10] f32, batch 10: numpy / numba ≥ 4", ratio(t, f32, 10, "numpy", "numba"), 4, ">="),
            ("[784,30,10] f32, batch 10: torch / numba ≥ 10", ratio(t, f32, 10, "torch", "numba"), 10, ">="),
            ("[784,30,10] f32, batch 10: numba / floor ≤ 3", t.loc[(f32, 10), "numba"] / floor[f32], 3, "<="),
        ]
        for b in (100, 1000):
            rows.append((f"[784,30,10] f32, batch {b}: numba / floor ≤ 2", t.loc[(f32, b), "numba"] / floor[f32],
                         2, "<="))
            others = t.loc[(f32, b)].drop("numba").min()
            rows.append((f"[784,30,10] f32, batch {b}: fastest other arm / numba ≥ 1", others / t.loc[(f32, b), "numba"],
                         1, ">="))
            rows.append((f"[784,30,10] batch {b}: numba f64 / f32 ≤ 2",
                         t.loc[("float64", b), "numba"] / t.loc[(f32, b), "numba"], 2, "<="))
        for b in (1, 10, 100, 1000):
            others = t.loc[("float64", b)].drop("numba").min()
            rows.append((f"[784,30,10] f64, batch {b}: fastest other arm / numba ≥ 1",
                         others / t.loc[("float64", b), "numba"], 1, ">="))
    for run, threads in (("bench", ""), ("bench_2threads", ", 2 threads")):
        for name, label in (("crossentropy_784_100_10_l2", "[784,100,10] CE"),
                            ("deep_784_100_30_10", "[784,100,30,10] CE")):
            folder = RESULTS / name / run
            if (folder / "results.csv").exists():
                t, _, _ = medians(folder)
                for b in sorted(t.loc["float32"].index):
                    others = t.loc[("float32", b)].drop("numba").min()
                    rows.append((f"{label} f32{threads}, batch {int(b)}: fastest other arm / numba ≥ 1",
                                 others / t.loc[("float32", b), "numba"], 1, ">="))
    two = RESULTS / "book_784_30_10" / "bench_2threads"
    if (two / "results.csv").exists():
        t, floor, _ = medians(two)
        for b in (100, 1000):
            rows.append((f"[784,30,10] f32, 2 threads, batch {b}: numba / floor (2-thread GEMM) ≤ 2",
                         t.loc[("float32", b), "numba"] / floor["float32"], 2, "<="))
    print("| target | measured | met |\n| :--- | ---: | :---: |")
    for text, value, bound, op in rows:
        met = value >= bound if op == ">=" else value <= bound
        print(f"| {text} | {value:.2f} | {'yes' if met else 'no'} |")


if __name__ == "__main__":
    main()
