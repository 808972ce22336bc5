"""mbtrain.bench.cores: the probe of whether the pool's threads have cores of their own (no timing asserted)."""
from __future__ import annotations

import math

import numpy as np
import pytest

import mbtrain
from mbtrain.bench import cores


def test_a_pass_loads_multiplies_adds_and_stores_every_value():
    block = np.array([1.0, 2.0, -3.0, 0.0])
    cores.rmw_block(block, 0.5, 1.0, 2)  # x -> x / 2 + 1, twice
    assert block.tolist() == [1.75, 2.0, 0.75, 1.5]


def test_the_probe_factor_and_term_keep_every_value_exactly_one():
    block = np.ones(64)
    cores.rmw_block(block, cores.A_FACTOR, cores.B_TERM, 1000)
    assert (block == 1.0).all()


def test_threads_blocks_start_apart_beyond_a_page_and_each_gets_its_own_rows():
    blocks = cores._blocks(3)
    assert blocks.shape == (3, cores.BLOCK_BYTES // 8) and (blocks == 1.0).all()
    starts = [blocks[p].__array_interface__["data"][0] for p in range(3)]
    assert all(b - a >= cores.BLOCK_BYTES + 4096 for a, b in zip(starts, starts[1:]))
    cores._rmw_threads(blocks, 0.5, 1.0, 1)  # every row worked on once: 1 -> 1.5
    assert (blocks == 1.5).all()


@pytest.mark.parametrize("threads", [1, 2])
def test_the_scaling_is_a_positive_ratio_on_the_pool_the_benchmark_set(threads):
    cores.compile_probe()
    with mbtrain.threads.limit(threads):
        scaling = cores.measure_core_scaling(passes=20, repeats=2)
    assert math.isfinite(scaling) and scaling > 0


def test_no_warning_for_one_thread_or_threads_that_scale():
    assert cores.shared_cores_warning(0.5, 1) is None
    assert cores.shared_cores_warning(1.9, 2) is None
    assert cores.shared_cores_warning(cores.SHARED_BELOW * 4, 4) is None
    assert cores.shared_cores_warning(math.nan, 2) is None


def test_threads_that_share_a_core_are_named_with_their_ratio():
    warning = cores.shared_cores_warning(1.17, 2)
    assert warning.startswith("2 threads did 1.17x the L1 work of one")
    assert "SMT siblings" in warning and "FMA probe" in warning
    assert cores.shared_cores_warning(2.9, 4).startswith("4 threads did 2.90x")
