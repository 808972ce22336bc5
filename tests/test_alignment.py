"""64-byte alignment: the parameters, the kernels' buffers, and epochs that do not depend on the data's alignment."""
from __future__ import annotations

import numpy as np
import pytest

import mbtrain
from mbtrain import _kernel_api as api
from mbtrain.backends import get_backend
from mbtrain.optim import Adam
from mbtrain.params import ALIGNMENT, empty_aligned, zeros_aligned


def offset(a) -> int:
    return a.ctypes.data % ALIGNMENT


def misaligned_copy(a, by_bytes=16):
    """A C-contiguous copy of ``a`` starting ``by_bytes`` after a 64-byte boundary (numpy's usual 16)."""
    buffer = np.empty(a.nbytes + 2 * ALIGNMENT, dtype=np.uint8)
    start = -buffer.ctypes.data % ALIGNMENT + by_bytes
    out = buffer[start:start + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    assert offset(out) == by_bytes
    return out


@pytest.mark.parametrize("shape", [7, (3, 5), (0, 4), (1000, 784)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_empty_aligned_starts_on_a_boundary_with_the_shape_and_dtype_asked(shape, dtype):
    a = empty_aligned(shape, dtype)
    assert (a.size == 0 or offset(a) == 0) and a.dtype == dtype and a.flags.c_contiguous
    assert a.shape == ((shape,) if isinstance(shape, int) else shape)
    z = zeros_aligned(shape, dtype)
    assert (z.size == 0 or offset(z) == 0) and not z.any()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_parameters_and_state_are_aligned_however_the_network_was_made(dtype, tmp_path):
    net = mbtrain.Network([784, 30, 10], dtype=dtype, seed=0)
    assert offset(net.params) == 0
    other = net.astype("float64" if dtype == "float32" else "float32")
    assert offset(other.params) == 0
    net.fit(np.random.default_rng(0).random((40, 784)).astype(dtype), np.arange(40) % 10, epochs=1,
            batch_size=10, eta=1e-3, optimizer="adam", progress=False)
    assert all(offset(a) == 0 for a in net.optimizer_state.arrays.values())
    net.save(tmp_path / "m.npz")
    assert offset(mbtrain.load(tmp_path / "m.npz").params) == 0


def test_the_work_space_is_aligned_and_the_gradient_takes_no_input_copy():
    work = api.new_work([784, 30, 10], 100, np.float32)
    assert all(offset(a) == 0 for a in (work.acts, work.deltas, work.inputs))
    assert work.inputs.shape == (100, 784)
    assert api.new_work([784, 30, 10], 1, np.float32).inputs.shape == (2, 784)  # online: this example and the next
    assert api.new_work([784, 30, 10], 60_000, np.float32, gather=False).inputs.shape == (0, 784)


@pytest.mark.parametrize("backend", ["numba", "numpy", "loop"])
@pytest.mark.parametrize("batch_size, optimizer", [(1, None), (10, None), (64, None), (10, "adam"), (64, "adam")])
def test_an_epoch_is_the_same_bit_for_bit_from_aligned_and_misaligned_rows(backend, batch_size, optimizer):
    """The numba epochs copy each batch's rows to an aligned buffer: the data's own alignment changes nothing."""
    rng = np.random.default_rng(1)
    X = rng.random((130, 64)).astype(np.float32)  # 256-byte rows: every row keeps the array's alignment
    X[X < 0.5] = 0
    y = rng.integers(0, 10, 130)
    results = []
    for data in (misaligned_copy(X, 0), misaligned_copy(X, 16), misaligned_copy(X, 4)):
        net = mbtrain.Network([64, 9, 10], dtype="float32", seed=0)
        net.fit(data, y, epochs=2, batch_size=batch_size, eta=0.5 if optimizer is None else 1e-2,
                lmbda=0.1, backend=backend, optimizer=optimizer or "sgd", seed=3, progress=False)
        results.append(net.params.copy())
    for other in results[1:]:
        np.testing.assert_array_equal(results[0], other)


@pytest.mark.parametrize("batch_size", [1, 5, 64])
def test_the_numba_epoch_with_gathered_rows_matches_the_loop_reference(batch_size):
    rng = np.random.default_rng(2)
    X = misaligned_copy(rng.random((70, 784)), 16)
    y = rng.integers(0, 10, 70)
    nets = {}
    for backend in ("numba", "loop"):
        net = mbtrain.Network([784, 17, 10], dtype="float64", seed=0)
        net.fit(X, y, epochs=1, batch_size=batch_size, eta=0.3, lmbda=0.5, backend=backend, seed=0, progress=False)
        nets[backend] = net.params
    np.testing.assert_allclose(nets["numba"], nets["loop"], rtol=1e-9, atol=1e-12)


def test_the_optimizer_epoch_with_gathered_rows_matches_numpy():
    rng = np.random.default_rng(3)
    X = misaligned_copy(rng.random((70, 784)), 16)
    Y = np.eye(10)[rng.integers(0, 10, 70)]
    params = {}
    for backend in ("numba", "numpy"):
        net = mbtrain.Network([784, 17, 10], dtype="float64", seed=0)
        state = Adam().new_state(net.layout.size, net.dtype)
        get_backend(backend).optimizer_epoch(net, X, Y, np.arange(70), 64, 1e-2, 0.5, 70, Adam(), state)
        params[backend] = net.params
    np.testing.assert_allclose(params["numba"], params["numpy"], rtol=1e-9, atol=1e-12)
