"""Shared driver of the published benchmark scripts: run ``mbtrain bench`` and ``mbtrain sweep`` into one folder.

Each script names its network and settings; this module runs the CLI commands
with them, so a figure in benchmarks/results/ is always reproducible with the
one command printed at the top of its report.md.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mbtrain.cli import main as mbtrain

RESULTS = Path(__file__).resolve().parent / "results"


def run(name: str, doc: str, bench_args: list[str], sweeps: dict[str, list[str]],
        more_benches: dict[str, list[str]] | None = None) -> int:
    """Parse ``--dataset/--quick/--only`` and run the bench(es) and each sweep into ``results/<name>/``.

    ``more_benches`` maps a folder name to the arguments of a further ``mbtrain
    bench`` run (e.g. the same network on two threads), run after the main one.
    """
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="fashion-mnist", help="digits, fashion-mnist or mnist")
    parser.add_argument("--quick", action="store_true", help="a smoke run (mbtrain --quick settings)")
    parser.add_argument("--only", choices=["bench", "sweep"], help="run only one of the two")
    parser.add_argument("--out", type=Path, default=RESULTS / name, help="result folder")
    args = parser.parse_args()
    common = ["--dataset", args.dataset] + (["--quick"] if args.quick else [])
    status = 0
    if args.only in (None, "bench"):
        status |= mbtrain(["bench", *common, *bench_args, "--out", str(args.out / "bench")])
        for label, more_args in (more_benches or {}).items():
            status |= mbtrain(["bench", *common, *more_args, "--out", str(args.out / label)])
    if args.only in (None, "sweep"):
        for label, sweep_args in sweeps.items():
            status |= mbtrain(["sweep", *common, *sweep_args, "--out", str(args.out / label)])
    print(f"results in {args.out}", file=sys.stderr)
    return status
