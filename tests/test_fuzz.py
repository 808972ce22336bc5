"""Hostile input: every file reader and the public API, fed random and damaged data.

Each must either work or raise a clear error -- a ``ValueError`` (the readers'
``DataFormatError``, ``UnsafePickleError``, ``ModelFormatError`` are all
ValueErrors whose message starts with the file's path) or a ``TypeError`` for
arguments of the wrong kind -- never an IndexError, struct.error, MemoryError,
ZeroDivisionError, RecursionError ... And a header that claims 10^12 items must
fail before allocating them: tracemalloc (which sees numpy's and the pickle
machine's allocations) bounds the peak.

Hypothesis example counts are kept small (the whole file runs in well under
30 s); ``deadline=None`` because the first call of a reader may import pandas
or compile a kernel.
"""
import gzip
import io
import json
import os
import pickle
import struct
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import mbtrain
from mbtrain import datasets
from mbtrain.backends import get_backend
from mbtrain.serialization import ModelFormatError
from mbtrain.training import TrainingDiverged

# MBTRAIN_FUZZ_EXAMPLES=2000 for a longer hunt (not in CI).
FUZZ = settings(max_examples=int(os.environ.get("MBTRAIN_FUZZ_EXAMPLES", 60)), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
FEW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
MEMORY_BOUND = 16 * 2**20  # bytes a reader may allocate on a tiny hostile file


# -- helpers -----------------------------------------------------------------

def idx_bytes(items: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, items.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in items.shape)
    return header + items.astype(np.uint8).tobytes()


def npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def npy_member(shape, descr="<f4", payload=b"\0" * 64) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": tuple(shape)})
    return buffer.getvalue() + payload


def zip_of(members: dict, compression=zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name + ".npy", data)
    return buffer.getvalue()


def book_pickle_bytes(rng, n=(6, 3, 3)) -> bytes:
    sets = tuple((rng.random((k, 4)).astype(np.float32), rng.integers(0, 10, k)) for k in n)
    return gzip.compress(pickle.dumps(sets, protocol=2))


def model_bytes(tmp_path: Path, format="npz") -> bytes:
    net = mbtrain.Network([4, 3, 2], seed=0)
    return net.save(tmp_path / f"valid.{format}", format=format).read_bytes()


def csv_bytes() -> bytes:
    return b"label,a,b,c\n3,0,255,17\n1,5,6,7\n"


def calls_reader(reader, path):
    """Call ``reader(path)``; pass on success or a clear error naming the file, fail on anything else."""
    try:
        reader(path)
    except ValueError as exc:  # DataFormatError, UnsafePickleError, ModelFormatError
        assert str(exc).startswith(str(path)), f"error does not start with the path: {exc}"


def peak_bytes(fn) -> int:
    """Peak traced allocation (numpy's and Python's) while ``fn()`` runs."""
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


READERS = {
    "idx": lambda p: datasets.read_idx(p),
    "idx_images": lambda p: datasets.read_idx_images(p),
    "idx_labels": lambda p: datasets.read_idx_labels(p),
    "book_pickle": lambda p: datasets.read_book_pickle(p),
    "npz": lambda p: datasets.read_npz(p),
    "csv": lambda p: datasets.read_csv(p),
    "model": lambda p: mbtrain.load(p),
}


def valid_files(tmp_path):
    rng = np.random.default_rng(0)
    return {
        "idx": idx_bytes(rng.integers(0, 256, (3, 4, 2))),
        "idx_images": gzip.compress(idx_bytes(rng.integers(0, 256, (3, 4, 2)))),
        "idx_labels": idx_bytes(np.arange(5) % 10),
        "book_pickle": book_pickle_bytes(rng),
        "npz": npz_bytes(x_train=rng.integers(0, 256, (4, 3), dtype=np.uint8), y_train=np.arange(4),
                         x_test=rng.random((2, 3)), y_test=np.arange(2)),
        "csv": csv_bytes(),
        "model": model_bytes(tmp_path),
        "network2": model_bytes(tmp_path, "network2"),
    }


def test_valid_files_read(tmp_path):
    """The seeds the mutations start from are valid, so a mutation is what breaks them."""
    for name, data in valid_files(tmp_path).items():
        path = tmp_path / f"seed-{name}"
        path.write_bytes(data)
        READERS.get(name, READERS["model"])(path)


# -- random bytes and damaged files ----------------------------------------

@pytest.mark.parametrize("reader", sorted(READERS))
@FUZZ
@given(data=st.one_of(st.binary(max_size=300),
                      st.binary(max_size=200).map(lambda b: b"\0\0\x08\x03" + b),  # an IDX magic
                      st.binary(max_size=200).map(lambda b: b"PK\x03\x04" + b),  # a zip's
                      st.binary(max_size=200).map(lambda b: b"\x80\x02" + b),  # a pickle's
                      st.binary(max_size=200).map(gzip.compress),
                      st.text(max_size=200).map(str.encode)))
def test_random_bytes_give_a_clear_error(tmp_path, reader, data):
    path = tmp_path / "random.bin"
    path.write_bytes(data)
    calls_reader(READERS[reader], path)


@pytest.mark.parametrize("kind", ["idx", "idx_images", "idx_labels", "book_pickle", "npz", "csv", "model",
                                  "network2"])
@FUZZ
@given(data=st.data())
def test_damaged_valid_files_give_a_clear_error(tmp_path, kind, data):
    """Truncation, overwritten bytes and inserted bytes at random places of a valid file."""
    original = valid_files.cache.setdefault(kind, valid_files(tmp_path)[kind])
    damage = data.draw(st.sampled_from(["truncate", "overwrite", "insert"]))
    at = data.draw(st.integers(0, len(original)))
    if damage == "truncate":
        damaged = original[:at]
    elif damage == "overwrite":
        patch = data.draw(st.binary(min_size=1, max_size=8))
        damaged = original[:at] + patch + original[at + len(patch):]
    else:
        damaged = original[:at] + data.draw(st.binary(min_size=1, max_size=8)) + original[at:]
    path = tmp_path / f"damaged-{kind}"
    path.write_bytes(damaged)
    calls_reader(READERS.get(kind, READERS["model"]), path)


valid_files.cache = {}


# -- headers that claim more than the file holds ----------------------------

DIMS = st.lists(st.one_of(st.integers(0, 2**32 - 1), st.sampled_from([0, 1, 2**31, 2**32 - 1, 10**6])),
                min_size=1, max_size=4)


@FUZZ
@given(dims=DIMS, payload=st.binary(max_size=64), gz=st.booleans(), type_code=st.sampled_from([8, 9, 0xB, 0xC, 0xD, 0xE]))
def test_idx_dimension_fields_claiming_gigabytes_allocate_nothing(tmp_path, dims, payload, gz, type_code):
    data = bytes([0, 0, type_code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims) + payload
    path = tmp_path / "claims.idx"
    path.write_bytes(gzip.compress(data) if gz else data)
    for reader in ("idx", "idx_images", "idx_labels"):
        assert peak_bytes(lambda: calls_reader(READERS[reader], path)) < MEMORY_BOUND


@FUZZ
@given(shape=st.lists(st.integers(0, 10**7), min_size=0, max_size=3),
       descr=st.sampled_from(["<f4", "<f8", "|u1", "<i8", "|b1", "<U8", "|O", "|V0", "|S0", ">f4"]),
       member=st.sampled_from(["x_train", "y_train", "x_test", "y_test", "params"]),
       deflate=st.booleans())
def test_npy_headers_claiming_gigabytes_allocate_nothing(tmp_path, shape, descr, member, deflate):
    """An .npz member whose header claims up to 10^21 items: data archive and saved model alike."""
    rng = np.random.default_rng(0)
    good = dict(x_train=npy_member((2, 3), "|u1", bytes(6)), y_train=npy_member((2,), "<i8", bytes(16)),
                x_test=npy_member((1, 3), "|u1", bytes(3)), y_test=npy_member((1,), "<i8", bytes(8)))
    good[member] = npy_member(shape, descr, rng.bytes(32))
    compression = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    data_path = tmp_path / "claims.npz"
    data_path.write_bytes(zip_of(good, compression))
    assert peak_bytes(lambda: calls_reader(READERS["npz"], data_path)) < MEMORY_BOUND
    metadata = json.dumps({"format": "mbtrain-network", "format_version": 1, "sizes": [3, 2],
                           "cost": "quadratic", "dtype": "float32"})
    model = {"params": good.get("params", npy_member((8,), "<f4", bytes(32))),
             "metadata": npy_member((), "<U%d" % len(metadata), metadata.encode("utf-32-le"))}
    model_path = tmp_path / "claims-model.npz"
    model_path.write_bytes(zip_of(model, compression))
    assert peak_bytes(lambda: calls_reader(READERS["model"], model_path)) < MEMORY_BOUND


def test_zip_member_claiming_a_terabyte_uncompressed(tmp_path):
    """The zip directory itself lies about a member's size: refused before reading."""
    data = bytearray(zip_of({"x_train": npy_member((10**6, 10**6), "<f4", bytes(64))}, zipfile.ZIP_DEFLATED))
    # patch the uncompressed size (32-bit) in the central directory entry
    central = data.rfind(b"PK\x01\x02")
    data[central + 24:central + 28] = struct.pack("<I", 2**32 - 2)
    path = tmp_path / "bomb.npz"
    path.write_bytes(bytes(data))
    assert peak_bytes(lambda: calls_reader(READERS["npz"], path)) < MEMORY_BOUND


@FUZZ
@given(sizes=st.lists(st.one_of(st.integers(-3, 10**13), st.floats(), st.text(max_size=3), st.none()),
                      min_size=0, max_size=5),
       n_params=st.integers(0, 50))
def test_model_metadata_claiming_huge_sizes_allocates_nothing(tmp_path, sizes, n_params):
    path = tmp_path / "sizes.npz"
    metadata = {"format": "mbtrain-network", "format_version": 1, "sizes": sizes, "cost": "quadratic",
                "dtype": "float32"}
    path.write_bytes(npz_bytes(params=np.zeros(n_params, np.float32), metadata=np.array(json.dumps(metadata))))
    assert peak_bytes(lambda: calls_reader(READERS["model"], path)) < MEMORY_BOUND


JSON = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-10**13, 10**13),
                              st.floats(allow_nan=False), st.text(max_size=5)),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
                    max_leaves=20)


@FUZZ
@given(sizes=JSON | st.lists(st.integers(1, 10**9), min_size=2, max_size=4), weights=JSON, biases=JSON,
       cost=st.sampled_from(["QuadraticCost", "CrossEntropyCost"]) | JSON, metadata=JSON)
def test_network2_json_and_npz_metadata_of_any_shape(tmp_path, sizes, weights, biases, cost, metadata):
    path = tmp_path / "model.json"
    path.write_text(json.dumps({"sizes": sizes, "weights": weights, "biases": biases, "cost": cost}))
    assert peak_bytes(lambda: calls_reader(READERS["model"], path)) < MEMORY_BOUND
    if isinstance(metadata, dict):
        metadata.update(format="mbtrain-network", sizes=sizes)
    path = tmp_path / "model.npz"
    path.write_bytes(npz_bytes(params=np.zeros(14, np.float32), metadata=np.array(json.dumps(metadata))))
    calls_reader(READERS["model"], path)


def test_deeply_nested_json_is_a_format_error(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text('{"sizes": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(ModelFormatError, match=str(path)):
        mbtrain.load(path)


# -- pickles: nothing runs, nothing explodes --------------------------------

@pytest.mark.parametrize("index", [2**20, 2**28, 2**31])
def test_pickle_memo_bomb_is_refused_without_allocating(tmp_path, index):
    """12 bytes that make CPython's unpickler allocate (and clear) 8 * index bytes of memo table."""
    path = tmp_path / "bomb.pkl"
    path.write_bytes(b"\x80\x02N" + b"r" + struct.pack("<I", index) + b".")
    def read():
        with pytest.raises(datasets.UnsafePickleError, match="memo index"):
            datasets.read_book_pickle(path)
    assert peak_bytes(read) < MEMORY_BOUND


@pytest.mark.parametrize("payload", [
    b"\x80\x02cbuiltins\ndict\n)\x81.",  # NEWOBJ
    b"\x80\x02(cos\nsystem\nX\x02\x00\x00\x00ido.",  # INST
    b"\x80\x02\x82\x01.",  # EXT1
    b"\x80\x02X\x01\x00\x00\x00aQ.",  # BINPERSID
])
def test_pickle_opcodes_outside_the_books_are_refused(tmp_path, payload):
    path = tmp_path / "odd.pkl"
    path.write_bytes(payload)
    with pytest.raises(ValueError, match=str(path)):
        datasets.read_book_pickle(path)


class _Reduce:
    def __init__(self, *reduce):
        self.reduce = reduce

    def __reduce__(self):
        return self.reduce


@FUZZ
@given(shape=st.lists(st.one_of(st.integers(0, 8), st.integers(0, 2**40)), max_size=4),
       descr=st.sampled_from(["<f4", ">f8", "<i8", "|u1", "|b1"]), n_bytes=st.integers(0, 80),
       fortran=st.booleans(), protocol=st.sampled_from([2, 4]))
def test_pickled_array_states_of_any_shape(tmp_path, shape, descr, n_bytes, fortran, protocol):
    """What BUILD gives an array: any shape against any number of bytes; never more than is present."""
    state = (1, tuple(shape), np.dtype(descr), fortran, bytes(n_bytes))
    labels = _Reduce(np.ndarray.__reduce__(np.zeros(0))[0], (np.ndarray, (0,), b"b"), state)
    path = tmp_path / "states.pkl"
    path.write_bytes(pickle.dumps(((np.zeros((1, 4), np.float32), labels),) * 3, protocol=protocol))
    assert peak_bytes(lambda: calls_reader(READERS["book_pickle"], path)) < MEMORY_BOUND


PICKLABLE = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=4), st.binary(max_size=4),
              hnp.arrays(st.sampled_from([np.float32, np.float64, np.int64, np.uint8]), hnp.array_shapes(max_dims=2, max_side=4))),
    lambda inner: st.tuples(inner, inner) | st.tuples(inner, inner, inner) | st.lists(inner, max_size=3),
    max_leaves=10)


@FUZZ
@given(obj=PICKLABLE, protocol=st.sampled_from([2, 3, 4, 5]))
def test_pickles_of_the_wrong_structure(tmp_path, obj, protocol):
    path = tmp_path / "wrong.pkl"
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    calls_reader(READERS["book_pickle"], path)


# -- the public API's arguments -----------------------------------------------

ANYTHING = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 50), st.integers(), st.floats(), st.text(max_size=4),
    st.lists(st.integers(-2, 6), max_size=4), st.just(np.array([None, 1], dtype=object)), st.just(object()),
    st.just(np.float32(np.nan)), st.just([]), st.just({"a": 1}),
)


@FUZZ
@given(sizes=ANYTHING | st.lists(st.one_of(st.integers(-2, 6), st.floats(0, 6), st.text(max_size=2)), max_size=4),
       cost=st.sampled_from(["quadratic", "cross_entropy", "softmax"]) | ANYTHING,
       init=st.sampled_from(["gaussian", "scaled"]) | ANYTHING,
       dtype=st.sampled_from(["float32", "float64"]) | ANYTHING,
       seed=st.one_of(st.none(), st.integers(0, 2**64)) | ANYTHING)
def test_network_arguments(sizes, cost, init, dtype, seed):
    try:
        net = mbtrain.Network(sizes, cost=cost, init=init, dtype=dtype, seed=seed)
    except (ValueError, TypeError):
        return
    assert np.isfinite(net.params).all()


def arrays_of_any_kind(n_features=4):
    shapes = st.one_of(st.just((5, n_features)), st.just((0, n_features)), st.just((5,)), st.just((5, 3)),
                       st.just((2, n_features, 1)), st.just(()), st.just((1, n_features)))
    dtypes = st.sampled_from([np.float32, np.float64, np.int64, np.uint8, np.bool_, np.complex128, "U3", object])

    @st.composite
    def draw(draw):
        dtype, shape = draw(dtypes), draw(shapes)
        if dtype is object:
            return np.empty(shape, dtype=object)
        values = draw(hnp.arrays(dtype, shape, elements=None if dtype not in (np.float32, np.float64) else
                                 st.floats(allow_nan=True, allow_infinity=True, width=32)))
        return values

    return st.one_of(draw(), ANYTHING, st.just([[1.0, 2.0], [3.0]]), st.just([[0.0] * n_features] * 5))


@pytest.fixture(scope="module")
def small_net():
    return mbtrain.Network([4, 3, 2], cost="cross_entropy", seed=0)


@FUZZ
@given(X=arrays_of_any_kind(), y=arrays_of_any_kind(2) | st.just(np.array([0, 1, 1, 0, 1])),
       method=st.sampled_from(["forward", "predict", "score", "loss", "gradients", "gradcheck", "fit"]),
       backend=st.sampled_from(["numba", "numpy", "loop"]))
def test_data_arguments_of_every_method(small_net, X, y, method, backend):
    net = small_net.copy()
    before = net.params.copy()
    calls = {
        "forward": lambda: net.forward(X),
        "predict": lambda: net.predict(X),
        "score": lambda: net.score(X, y),
        "loss": lambda: net.loss(X, y),
        "gradients": lambda: net.gradients(X, y, backend=backend),
        "gradcheck": lambda: mbtrain.gradcheck(net, X, y),
        "fit": lambda: net.fit(X, y, epochs=1, batch_size=2, eta=0.5, backend=backend, monitor=False,
                               progress=False),
    }
    try:
        out = calls[method]()
    except (ValueError, TypeError):
        np.testing.assert_array_equal(net.params, before)  # a refused call changes nothing
        return
    if method in ("forward", "loss"):
        assert np.isfinite(out).all()


@FUZZ
@given(epochs=ANYTHING, batch_size=ANYTHING, eta=ANYTHING | st.floats(), lmbda=ANYTHING | st.floats(),
       n=ANYTHING, backend=ANYTHING | st.sampled_from(["numba", "numpy", "loop"]))
def test_scalar_arguments(small_net, epochs, batch_size, eta, lmbda, n, backend):
    net = small_net.copy()
    X, y = np.random.default_rng(0).random((6, 4)), np.array([0, 1, 1, 0, 1, 0])
    for call in (lambda: net.fit(X, y, epochs=epochs, batch_size=batch_size, eta=eta, lmbda=lmbda,
                                 backend=backend, monitor=False, progress=False),
                 lambda: net.loss(X, y, lmbda=lmbda, n=n),
                 lambda: net.gradients(X, y, lmbda=lmbda, n=n, backend=backend),
                 lambda: mbtrain.gradcheck(net, X[:2], y[:2], lmbda=lmbda, eps=eta)):
        try:
            call()
        except (ValueError, TypeError, TrainingDiverged):
            pass


# -- numerical faults across backends and dtypes ----------------------------

@pytest.mark.parametrize("backend", ["numba", "numpy", "loop"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@FEW
@given(log_eta=st.floats(0, 40), batch_size=st.integers(1, 7), seed=st.integers(0, 3))
def test_divergence_is_caught_wherever_it_happens(backend, dtype, log_eta, batch_size, seed):
    """Any eta: training ends normally with finite weights, or raises TrainingDiverged with finite weights."""
    rng = np.random.default_rng(seed)
    X = rng.random((20, 3)) * 50
    y = rng.integers(0, 2, 20)
    net = mbtrain.Network([3, 5, 2], cost="quadratic", dtype=dtype, seed=seed)
    try:
        net.fit(X, y, epochs=2, batch_size=batch_size, eta=float(np.exp(log_eta)), backend=backend,
                monitor=True, progress=False)
    except TrainingDiverged as exc:
        assert exc.epoch in (1, 2) and (exc.batch is None or 0 <= exc.batch < -(-20 // batch_size))
    assert np.isfinite(net.params).all()


@pytest.mark.parametrize("backend", ["numba", "numpy", "loop"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fast_kernels_do_not_hide_a_nan_weight(backend, dtype):
    """A NaN already in the weights must surface (fastmath may not assume it away)."""
    rng = np.random.default_rng(0)
    X, y = rng.random((8, 3)), rng.integers(0, 2, 8)
    net = mbtrain.Network([3, 4, 2], dtype=dtype, seed=0)
    net.weights[1][0, 0] = np.nan
    assert np.isnan(net.forward(X)).any()
    assert not np.isfinite(net.gradients(X, y, backend=backend)[0][0]).all()
    # fit refuses such a network up front (divergence could only "restore" the NaN) ...
    with pytest.raises(ValueError, match=r"net: parameter 16 \(layer 1 weights\[0, 0\]\) is nan"):
        net.fit(X, y, epochs=1, batch_size=4, eta=0.1, backend=backend, monitor=False, progress=False)
    # ... so the epoch kernel is asked directly: it must report the first mini-batch
    epoch = get_backend(backend).sgd_epoch
    assert epoch(net, net._check_X(X), y, np.arange(8), 4, 0.1, 0.0, 8) == 0
