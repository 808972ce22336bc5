"""Byte-valued training rows read as bytes by the numba epochs (``NumbaBackend.epoch_inputs``).

Rows whose every value is ``k / 255`` (or ``k / 16``) are held as their codes
``k`` and decoded per batch; the decoded values must be the original ones bit
for bit, so a fit from the codes equals a fit from the floats exactly, on
every epoch kernel (online, serial, parallel, the optimizers).
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import mbtrain
from mbtrain import fast_kernels as fk
from mbtrain.backends import get_backend
from mbtrain.backends.numba_matrix import BYTE_SCALES, ByteCodedRows, NumbaBackend
from mbtrain.bench.arms import BackendRunner
from mbtrain.datasets._convert import scale_to_unit

DTYPES = [np.float32, np.float64]
#: tests/test_nojit.py runs this file without the JIT too.
JIT_DISABLED = os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0")


def byte_rows(n, f, dtype, scale=255, seed=0):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, scale + 1, size=(n, f)).astype(np.uint8)
    codes[:, :3] = 0  # a border of zeros, as images have
    return codes, scale_to_unit(codes, scale, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [255, 16])
def test_byte_valued_rows_become_their_codes(dtype, scale):
    codes, X = byte_rows(40, 12, dtype, scale)
    net = mbtrain.Network([12, 5, 3], dtype=dtype, seed=0)
    rows = get_backend("numba").epoch_inputs(net, X)
    assert isinstance(rows, ByteCodedRows)
    np.testing.assert_array_equal(rows.codes, codes)
    assert type(rows.scale) is np.dtype(dtype).type and rows.scale == scale
    decoded = np.empty_like(X)
    fk.gather_rows(decoded, X[:0], rows.codes, rows.scale, np.arange(40, dtype=np.int64), 0, 40)
    np.testing.assert_array_equal(decoded, X)  # bit for bit


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", BYTE_SCALES)
@pytest.mark.parametrize("n", [256, 1000])  # every code once, and a row of 1000 (LLVM's vector loop and its remainder)
def test_every_code_decodes_to_its_quotient_bit_for_bit(dtype, scale, n):
    """decode_row's reciprocal corrected by the exact residual (fused multiply-adds) against the division,
    for all 256 codes: the rows the epochs decode are the rows the caller gave, whatever the codes."""
    codes = (np.arange(n) % 256).astype(np.uint8)
    out = np.full(n, np.nan, dtype=dtype)
    fk.decode_row(out, codes, dtype(scale))
    np.testing.assert_array_equal(out, codes.astype(dtype) / dtype(scale))


@pytest.mark.skipif(JIT_DISABLED, reason="plain Python rounds the product first (decode_row divides there)")
def test_fused_multiply_add_rounds_once():
    """The compiled fma keeps what a separate product would round away: (1 + 2^-12)^2 - 1 in float32."""
    from numba import njit

    fma = njit(lambda a, b, c: fk.fused_multiply_add(a, b, c))
    a = np.float32(1 + 2.0 ** -12)
    assert fma(a, a, np.float32(-1)) == np.float32(2.0 ** -11 + 2.0 ** -24)  # a * a rounded first gives 2^-11
    assert np.float32(a * a) - np.float32(1) == np.float32(2.0 ** -11)
    assert fma(1.5, 2.0, 0.25) == 3.25


def one_value_changed(X, value, row=23, col=7):
    X = X.copy()
    X[row, col] = value
    return X


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ["next float", "NaN", "negative", "above 1", "fraction of a code"])
def test_any_value_that_is_not_a_code_keeps_the_floats(dtype, case):
    _, X = byte_rows(40, 12, dtype)
    value = {"next float": np.nextafter(X[23, 7], dtype(2)), "NaN": np.nan, "negative": -1 / 255,
             "above 1": 256 / 255, "fraction of a code": 10.5 / 255}[case]
    X = one_value_changed(X, dtype(value))
    net = mbtrain.Network([12, 5, 3], dtype=dtype, seed=0)
    assert get_backend("numba").epoch_inputs(net, X) is X


def test_floats_the_epochs_cannot_read_as_codes_are_kept(tmp_path):
    _, X32 = byte_rows(40, 12, np.float32)
    net64, net32 = (mbtrain.Network([12, 5, 3], dtype=d, seed=0) for d in ("float64", "float32"))
    backend = get_backend("numba")
    assert backend.epoch_inputs(net64, X32) is X32  # widened per batch: its codes would decode in float64
    strided = np.asfortranarray(X32)
    assert backend.epoch_inputs(net32, strided) is strided
    path = tmp_path / "x.npy"
    np.save(path, X32)
    mapped = np.load(path, mmap_mode="r")
    assert backend.epoch_inputs(net32, mapped) is mapped  # no copy of a data set that is not in memory
    view = np.asarray(mapped)[:30]  # a plain ndarray over the map
    assert not isinstance(view, np.memmap) and backend.epoch_inputs(net32, view) is view
    assert get_backend("numpy").epoch_inputs(net32, X32) is X32


def fit_both_ways(monkeypatch, dtype, batch_size, threads, optimizer, epochs=2):
    """Parameters (and Adam's moments) after a fit from the codes and one from the floats."""
    _, X = byte_rows(150, 12, dtype, seed=3)
    y = np.random.default_rng(4).integers(0, 3, size=150)
    results = []
    for coded in (True, False):
        if not coded:
            monkeypatch.setattr(NumbaBackend, "epoch_inputs", lambda self, net, X: X)
        net = mbtrain.Network([12, 9, 3], cost="cross_entropy", dtype=dtype, seed=1)
        with mbtrain.threads.limit(threads):
            history = net.fit(X, y, epochs=epochs, batch_size=batch_size, eta=0.5 if optimizer == "sgd" else 0.01,
                              lmbda=0.3, optimizer=optimizer, backend="numba", monitor=False, progress=False, seed=5)
        state = net.optimizer_state.arrays if net.optimizer_state is not None else {}
        results.append((net.params.copy(), {k: v.copy() for k, v in state.items()}, history))
    return results


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch_size, threads, optimizer", [
    (1, 1, "sgd"), (7, 1, "sgd"), (70, 2, "sgd"), (7, 1, "adam"), (70, 2, "momentum"),
])
def test_a_fit_from_the_codes_equals_a_fit_from_the_floats_bit_for_bit(monkeypatch, dtype, batch_size, threads,
                                                                       optimizer):
    (coded, coded_state, history), (floats, float_state, _) = fit_both_ways(monkeypatch, dtype, batch_size, threads,
                                                                            optimizer)
    np.testing.assert_array_equal(coded, floats)
    assert coded_state.keys() == float_state.keys()
    for key in coded_state:
        np.testing.assert_array_equal(coded_state[key], float_state[key])
    assert history.attrs["input_seconds"] >= 0.0


def test_the_fit_reports_what_preparing_the_rows_took():
    _, X = byte_rows(60, 12, np.float32)
    net = mbtrain.Network([12, 5, 3], dtype="float32", seed=0)
    history = net.fit(X, np.zeros(60, dtype=int), epochs=1, batch_size=10, eta=0.1, monitor=False, progress=False)
    assert isinstance(history.attrs["input_seconds"], float) and history.attrs["input_seconds"] > 0.0


def test_the_benchmark_runner_reads_the_rows_as_fit_does():
    _, X = byte_rows(60, 12, np.float32)
    net = mbtrain.Network([12, 5, 3], dtype="float32", seed=0)
    Y = np.eye(3, dtype=np.float32)[np.zeros(60, dtype=int)]
    sgd = mbtrain.optim.get_optimizer("sgd")
    assert isinstance(BackendRunner(get_backend("numba"), net, X, Y, sgd).inputs, ByteCodedRows)
    assert BackendRunner(get_backend("numpy"), net, X, Y, sgd).inputs is not None
