"""benchmarks/epoch_pieces.py: a smoke run on digits lists every piece of the epoch (no timing asserted)."""
from __future__ import annotations

import pytest

from conftest import benchmark_script

PIECES = ["gather floats", "gather bytes", "forward 1", "sigmoid 1", "forward 2", "output 2", "output delta",
          "hidden delta", "update 2", "update 1", "sum (bytes)"]


@pytest.fixture(scope="module")
def epoch_pieces():
    return benchmark_script("epoch_pieces")


@pytest.mark.parametrize("cost", ["quadratic", "softmax"])
def test_a_quick_run_times_every_piece(epoch_pieces, capsys, cost):
    assert epoch_pieces.main(["--quick", "--hidden", "12", "--batch-size", "32", "--cost", cost]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"[64,12,10] {cost}, batch 32, ")
    lines = {line.split("  ")[1].strip(): line for line in out.splitlines()[1:]}
    assert list(lines) == PIECES
    for piece, line in lines.items():
        assert float(line.split()[-4 if piece in ("forward 1", "update 1") else -2]) >= 0.0
