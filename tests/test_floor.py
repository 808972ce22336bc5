"""The honest floor: the FMA peak probe, the floor that takes the higher rate, machine.json's ISA and BLAS kernel,
and the report's warning when BLAS runs a kernel narrower than the CPU."""
from __future__ import annotations

import json
import math
import re

import numba
import numpy as np
import pandas as pd
import pytest

from mbtrain import fast_tiles
from mbtrain.bench import bandwidth, machine, peak
from mbtrain.bench.comparison import machine_differences
from mbtrain.bench.floor import Floor, epoch_flops, measure_floor
from mbtrain.bench.markdown import header_lines
from mbtrain.bench.report import render_report
from mbtrain.bench.results import ResultsWriter

HASWELL = {"user_api": "blas", "internal_api": "openblas", "version": "0.3.31", "num_threads": 2,
           "threading_layer": "pthreads", "architecture": "Haswell", "filepath": "/fake/libopenblas.so"}
AVX512_FLAGS = {"sse2", "avx", "avx2", "fma", "avx512f", "avx512dq"}
AVX2_FLAGS = {"sse2", "avx", "avx2", "fma"}
WARNING = "Warning: BLAS runs a kernel narrower than the CPU supports"


# -- the probe -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_probe_returns_a_positive_finite_rate(dtype):
    peak.compile_probe([dtype])
    rate = peak.measure_peak_rate(dtype, seconds=0.002, repeats=2)
    assert math.isfinite(rate) and rate > 0


def test_the_probe_runs_on_each_thread_of_numbas_pool_and_leaves_the_pool_as_it_was():
    before = numba.get_num_threads()
    peak.compile_probe(["float32"])
    numba.set_num_threads(1)
    try:
        assert peak.measure_peak_rate("float32", seconds=0.002, repeats=1) > 0
        assert numba.get_num_threads() == 1
    finally:
        numba.set_num_threads(before)


def test_block_numbers_is_a_block_of_bytes_in_each_dtype():
    assert peak.BLOCK_BYTES == peak.ACCUMULATORS * peak.VECTOR_WIDTH_BYTES and peak.BLOCK_BYTES % 64 == 0
    assert peak.block_length("float32") == 2 * peak.block_length("float64")
    assert peak.block_numbers(np.ones(3, np.float64)) == peak.BLOCK_BYTES // 8  # the plain function agrees


def _probe_assembly():
    """The machine code of the probe's block loop, compiled afresh (numba shows no code of a cached function)."""
    uncached = numba.njit(**dict(peak.PROBE_OPTIONS, cache=False))(peak.PROBE_BLOCK)
    for dtype in (np.float32, np.float64):
        uncached(np.ones(peak.block_length(dtype), dtype), dtype(peak.A_FACTOR), dtype(peak.B_TERM), 2)
    return uncached.inspect_asm()


@pytest.mark.skipif(machine.numba_target()["isa"] != "AVX-512", reason="numba does not compile for AVX-512 here")
def test_on_avx512_the_probe_is_one_zmm_fma_per_accumulator_with_no_memory_operand():
    for signature, asm in _probe_assembly().items():
        fmas = re.findall(r"^\s*vfmadd\w*\s+(.*)$", asm, flags=re.M)
        on_zmm = [f for f in fmas if "%zmm" in f]
        assert len(on_zmm) >= peak.ACCUMULATORS, (signature, fmas)
        assert not [f for f in fmas if "(" in f], f"{signature}: an FMA reads memory (a spilled accumulator)"


def test_on_avx512_the_probe_is_written_in_explicit_vectors_whatever_width_llvm_prefers_for_loops():
    """LLVM vectorizes loops at 256 bits on Intel cores ("rocketlake": the loop probe ran at 75 GFLOP/s, ymm,
    against 135 for zmm): the probe's width must not depend on that preference."""
    assert (peak.PROBE_BLOCK is peak._fma_vectors) == (machine.numba_target()["isa"] == "AVX-512")
    if peak.PROBE_BLOCK is peak._fma_vectors:
        assert peak.ACCUMULATORS == 16 and peak.block_length("float32") == 16 * 16


@pytest.mark.skipif(not fast_tiles.WIDE_VECTORS, reason="the explicit vectors need AVX-512")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_vector_block_runs_every_number_of_its_sixteen_vectors(dtype):
    block = numba.njit(**dict(peak.PROBE_OPTIONS, cache=False))(peak._fma_vectors)
    acc = np.ones(16 * (64 // np.dtype(dtype).itemsize), dtype)
    acc[::7] = 2  # numbers off 1 move: every vector does the arithmetic the probe counts
    a, b = dtype(peak.A_FACTOR), dtype(peak.B_TERM)
    block(acc, a, b, 3)
    expected = np.float64(2)
    for _ in range(3):
        expected = expected * float(a) + float(b)
    np.testing.assert_allclose(acc[::7], expected, rtol=1e-6)
    assert np.all(np.delete(acc, np.s_[::7]) == 1)


@pytest.mark.skipif(machine.numba_target()["isa"] != "AVX2" or "fma" not in machine.cpu_flags(),
                    reason="numba does not compile for AVX2 with FMA here")
def test_on_avx2_the_probe_is_one_ymm_fma_per_accumulator():
    for signature, asm in _probe_assembly().items():
        assert len(re.findall(r"^\s*vfmadd\w*\s+.*%ymm", asm, flags=re.M)) >= peak.ACCUMULATORS, signature


# -- the floor takes the higher rate --------------------------------------------------------------------------------


def test_the_compute_floor_runs_at_the_higher_rate_and_names_it():
    flops = epoch_flops([784, 30, 10], 60000)
    floor = Floor({"float32": 1e11, "float64": 5e10}, bandwidth_bytes_per_second=1e12,
                  probe_flops_per_second={"float32": 4e11, "float64": 2e10})
    assert floor.compute_rate("float32") == (4e11, "probe")
    assert floor.compute_rate("float64") == (5e10, "gemm")  # a probe below BLAS (narrower vectors) does not set it
    assert floor.epoch_floor([784, 30, 10], 60000, "float32")["compute_floor_seconds"] == pytest.approx(flops / 4e11)
    assert floor.epoch_floor([784, 30, 10], 60000, "float64")["compute_floor_seconds"] == pytest.approx(flops / 5e10)
    row = floor.row("float32")
    assert row["compute_rate_source"] == "probe" and row["probe_flops_per_second"] == 4e11
    assert row["gemm_flops_per_second"] == 1e11
    described = floor.describe()
    assert described["compute_rate_source"] == {"float32": "probe", "float64": "gemm"}
    assert described["probe"]["accumulators"] == peak.ACCUMULATORS


def test_a_floor_without_a_probe_is_the_gemm_floor():
    floor = Floor({"float32": 1e11}, bandwidth_bytes_per_second=1e12)
    assert floor.compute_rate("float32") == (1e11, "gemm")
    assert floor.row("float32")["probe_flops_per_second"] is None


def test_measure_floor_measures_both_rates_for_every_dtype():
    floor = measure_floor(("float32", "float64"), quick=True)
    for dtype in ("float32", "float64"):
        assert floor.probe_flops_per_second[dtype] > 0 and floor.gemm_flops_per_second[dtype] > 0
        rate, source = floor.compute_rate(dtype)
        assert rate == max(floor.probe_flops_per_second[dtype], floor.gemm_flops_per_second[dtype])
        assert source == ("probe" if rate == floor.probe_flops_per_second[dtype] else "gemm")
    assert floor.threads == numba.get_num_threads() and floor.probe_compile_seconds >= 0
    assert floor.probe_bandwidth_bytes_per_second > 0 and floor.numpy_bandwidth_bytes_per_second > 0
    assert floor.bandwidth_bytes_per_second == max(floor.probe_bandwidth_bytes_per_second,
                                                   floor.numpy_bandwidth_bytes_per_second)
    assert floor.row("float32")["bandwidth_source"] == floor.bandwidth_source
    assert floor.describe()["bandwidth_source"] in ("probe", "numpy")


def test_a_floor_without_the_probes_reads_at_numpys_rate():
    floor = measure_floor(("float32",), quick=True, probe=False)
    assert floor.bandwidth_bytes_per_second == floor.numpy_bandwidth_bytes_per_second > 0
    assert floor.bandwidth_source == "numpy" and math.isnan(floor.probe_bandwidth_bytes_per_second)
    assert floor.probe_flops_per_second == {}


# -- the read probe --------------------------------------------------------------------------------------------------


def test_the_read_probe_sums_every_share_and_returns_a_positive_finite_rate():
    bandwidth.compile_probe()
    rate = bandwidth.measure_read_bandwidth(n_bytes=2 ** 20, repeats=2)
    assert math.isfinite(rate) and rate > 0


@pytest.mark.parametrize("n, parts", [(1000, 1), (1000, 2), (1001, 3), (5, 8)])
def test_the_read_probe_shares_cover_the_array_once(n, parts):
    a = np.arange(n, dtype=np.float64)
    sums = np.zeros(parts)
    bandwidth._read_threads(a, sums)
    assert sums.sum() == a.sum()  # integers below 2**53: exact in any order
    lo, hi = min(3, n), min(n, 20)
    assert bandwidth.share_sum(a, lo, hi) == sum(range(lo, hi)) and bandwidth.share_sum(a, lo, lo) == 0


def test_the_read_probe_is_vectorized():
    """A scalar sum waits on its additions (numpy's one-core sum read 18 GB/s where the vectorized probe read 34):
    the probe must compile to packed additions, or it measures the adder. On AVX-512 LLVM may keep loops at 256 bits
    (it does for an Intel host it names rocketlake); that is enough for a read probe, which is bound by memory: on
    that Xeon the ymm sum read 9-10.7 GB/s on one thread and 17-19 on two, a sum in explicit zmm vectors 10.3 and
    17-18.4 in the same session."""
    uncached = numba.njit(**dict(bandwidth.READ_OPTIONS, cache=False))(bandwidth.share_sum.py_func)
    uncached(np.ones(64), 0, 64)
    asm = next(iter(uncached.inspect_asm().values()))
    registers = {64: "[yz]mm", 32: "ymm"}.get(peak.VECTOR_WIDTH_BYTES, "[xyz]mm")
    assert re.search(rf"vaddpd\s+[^\n]*{registers}", asm), "the share sum compiled without packed additions"


def test_the_read_probe_says_so_when_its_sum_is_wrong(monkeypatch):
    monkeypatch.setattr(bandwidth, "_read_threads", lambda a, sums: sums.fill(1.0))
    with pytest.raises(RuntimeError, match="did not read what it counts"):
        bandwidth.measure_read_bandwidth(n_bytes=2 ** 16, repeats=1)


# -- machine.json ----------------------------------------------------------------------------------------------------


def test_machine_json_records_isa_numba_target_blas_kernel_and_environment(monkeypatch):
    monkeypatch.setenv("OPENBLAS_TEST_PROBE", "7")
    monkeypatch.setenv("UNRELATED_TEST_VARIABLE", "1")
    info = json.loads(json.dumps(machine.machine_info(command="test")))
    for key in ("cpu_model", "isa", "isa_source", "numba_target", "blas", "environment"):
        assert key in info, key
    assert info["isa"] in sum(machine.ISA_FAMILIES, ()) or info["isa"] is None
    assert set(info["numba_target"]) == {"cpu", "isa"} and info["numba_target"]["cpu"]
    assert info["environment"]["OPENBLAS_TEST_PROBE"] == "7" and "UNRELATED_TEST_VARIABLE" not in info["environment"]
    for pool in (p for p in info["blas"] if p.get("user_api") == "blas"):
        assert {"architecture", "internal_api", "version", "num_threads", "kernel_isa"} <= set(pool)


@pytest.mark.parametrize("flags, isa", [
    ({"sse", "sse2"}, "SSE"), ({"sse2", "avx"}, "AVX"), (AVX2_FLAGS, "AVX2"), (AVX512_FLAGS, "AVX-512"),
    ({"fp", "asimd"}, "NEON"), ({"asimd", "sve"}, "SVE"), ({"+avx2", "+fma"}, "AVX2"), (set(), None)])
def test_widest_isa_from_cpuinfo_flags_or_llvm_features(flags, isa):
    assert machine.widest_isa(flags) == isa


def test_cpu_flags_read_x86_and_arm_cpuinfo(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nmodel name\t: Test\nflags\t\t: fpu sse2 avx2 avx512f\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd evtstrm\n")
    assert machine.cpu_flags(x86) == {"fpu", "sse2", "avx2", "avx512f"}
    assert machine.widest_isa(machine.cpu_flags(arm)) == "NEON"
    assert machine.cpu_flags(tmp_path / "missing") == set()


@pytest.mark.parametrize("pool, env, isa", [
    (HASWELL, {}, "AVX2"), (dict(HASWELL, architecture="SkylakeX"), {}, "AVX-512"),
    (dict(HASWELL, architecture="Zen"), {}, "AVX2"), (dict(HASWELL, architecture="Unknown9"), {}, None),
    ({"user_api": "blas", "internal_api": "blis", "architecture": "skx"}, {}, "AVX-512"),
    ({"user_api": "blas", "internal_api": "mkl"}, {}, None),
    ({"user_api": "blas", "internal_api": "mkl"}, {"MKL_ENABLE_INSTRUCTIONS": "AVX2"}, "AVX2")])
def test_the_isa_of_each_blas_kernel(pool, env, isa):
    assert machine.blas_kernel_isa(pool, env) == isa


# -- the warning -----------------------------------------------------------------------------------------------------


def fake_machine(monkeypatch, flags, pool, coretype=None):
    """machine_info() on a CPU with ``flags`` whose BLAS is ``pool`` (threadpoolctl's dict), faked."""
    monkeypatch.setattr(machine, "cpu_flags", lambda path="/proc/cpuinfo": set(flags))
    monkeypatch.setattr(machine, "threadpool_info", lambda: [dict(pool)])
    if coretype is None:
        monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    else:
        monkeypatch.setenv("OPENBLAS_CORETYPE", coretype)
    return machine.machine_info(command="test")


def _machine_section(info):
    return "\n".join(header_lines(pd.DataFrame({"kind": ["floor"], "dataset": ["digits"]}), info,
                                  pd.DataFrame(columns=["executor", "jobs", "workers"]), [], False))


def test_haswell_blas_on_an_avx512_cpu_is_warned_and_names_the_variable(monkeypatch):
    info = fake_machine(monkeypatch, AVX512_FLAGS, HASWELL, coretype="Haswell")
    assert info["isa"] == "AVX-512" and info["blas"][0]["kernel_isa"] == "AVX2"
    (sentence,) = machine.narrower_blas_warnings(info)
    assert "Haswell kernel (AVX2) on a CPU with AVX-512" in sentence
    assert "`OPENBLAS_CORETYPE=Haswell` is set in the environment" in sentence
    text = _machine_section(info)
    assert WARNING in text and "OPENBLAS_CORETYPE=Haswell" in text


def test_without_the_variable_the_warning_names_the_variable_that_would_override_it(monkeypatch):
    info = fake_machine(monkeypatch, AVX512_FLAGS, HASWELL)
    (sentence,) = machine.narrower_blas_warnings(info)
    assert "`OPENBLAS_CORETYPE` is not set" in sentence


@pytest.mark.parametrize("flags, architecture", [(AVX512_FLAGS, "SkylakeX"), (AVX2_FLAGS, "Haswell"),
                                                 (AVX2_FLAGS, "SkylakeX"), (AVX512_FLAGS, "Unknown9")])
def test_no_warning_when_the_kernel_is_as_wide_as_the_cpu_or_unknown(monkeypatch, flags, architecture):
    info = fake_machine(monkeypatch, flags, dict(HASWELL, architecture=architecture))
    assert machine.narrower_blas_warnings(info) == []
    assert WARNING not in _machine_section(info)


def test_an_older_machine_json_without_kernel_isa_is_still_warned():
    info = {"isa": "AVX-512", "blas": [HASWELL], "environment": {"OPENBLAS_CORETYPE": "Haswell"}}
    assert len(machine.narrower_blas_warnings(info)) == 1
    assert machine.narrower_blas_warnings({"blas": [HASWELL]}) == []  # no ISA recorded: nothing to compare


def _floor_folder(path, info, probe_rate):
    path.mkdir()
    with ResultsWriter(path / "results.csv") as writer:
        writer.write(kind="floor", dataset="digits", sizes="64,30,10", cost="quadratic", dtype="float32", rows=100,
                     floor_seconds=0.001, floor_bound="compute", compute_floor_seconds=0.001,
                     memory_floor_seconds=0.0001, epoch_flops=1e8, epoch_bytes=1e6, gemm_flops_per_second=1e11,
                     probe_flops_per_second=probe_rate, compute_rate_source="probe" if probe_rate > 1e11 else "gemm",
                     bandwidth_bytes_per_second=1e10)
    info = dict(info, run="bench", dataset="digits",
                floor={"gemm_flops_per_second": {"float32": 1e11}, "probe_flops_per_second": {"float32": probe_rate},
                       "probe": {"vector_bits": 512, "accumulators": 16, "threads": 1, "compile_seconds": 0.5}})
    (path / "machine.json").write_text(json.dumps(info, default=str))
    return path


def test_the_report_warns_states_the_probe_and_compares_isa_and_kernel(monkeypatch, tmp_path):
    narrow = _floor_folder(tmp_path / "narrow", fake_machine(monkeypatch, AVX512_FLAGS, HASWELL, "Haswell"), 4e11)
    wide = _floor_folder(tmp_path / "wide", fake_machine(monkeypatch, AVX2_FLAGS, dict(HASWELL, architecture="Zen")),
                         0.9e11)
    text = render_report(narrow)
    assert WARNING in text and "OPENBLAS_CORETYPE=Haswell" in text
    (row,) = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()
              if line.startswith("| float32")]
    assert row[1:4] == ["100", "400", "probe"]  # GEMM GFLOP/s, probe GFLOP/s, the rate the floor took
    assert "at the FMA probe's rate" in text and "16 independent 512-bit accumulators" in text
    assert WARNING not in render_report(wide) and "at the GEMM rate" in render_report(wide)
    differs = machine_differences(json.loads((narrow / "machine.json").read_text()),
                                  json.loads((wide / "machine.json").read_text())).set_index("what")
    assert differs.loc["ISA", "differs"] and differs.loc["BLAS kernel", "differs"]
    assert differs.loc["BLAS environment", "differs"] and differs.loc["FMA probe GFLOP/s float32", "differs"]
    assert "(AVX2)" in differs.loc["BLAS kernel", "this run"]
    assert not differs.loc["GEMM GFLOP/s float32", "differs"]
