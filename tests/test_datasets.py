"""mbtrain.datasets: readers on small files written here, named data sets, splits.

Downloads are tested in test_download.py against a loopback server; nothing
here touches the network (every load() call below passes download=False or
finds its files locally).
"""
import gzip
import hashlib
import importlib.util
import io
import os
import pickle
import struct
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from mbtrain import datasets
from mbtrain.datasets import DataFormatError, UnsafePickleError
from mbtrain.datasets.catalog import FASHION_MNIST

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


# -- helpers ---------------------------------------------------------------

def idx_bytes(items: np.ndarray, type_code: int = 0x08) -> bytes:
    """An IDX file: magic (0, 0, type code, ndim), big-endian uint32 dims, big-endian items."""
    header = bytes([0, 0, type_code, items.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in items.shape)
    return header + items.astype(items.dtype.newbyteorder(">")).tobytes()


def write(path: Path, data: bytes, gz: bool = False) -> Path:
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_idx_set(directory: Path, n_train=6, n_test=4, label_offset=0, gz=True, seed=0) -> dict:
    """The four standard IDX files (tiny 4x3 images) in ``directory``; returns the arrays."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 4, 3), dtype=np.uint8),
        "train-labels-idx1-ubyte": ((np.arange(n_train) + label_offset) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 4, 3), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": ((np.arange(n_test) + label_offset) % 10).astype(np.uint8),
    }
    for name, items in arrays.items():
        write(directory / (name + ".gz" if gz else name), idx_bytes(items), gz=gz)
    return arrays


@pytest.fixture
def isolated_search_path(tmp_path, monkeypatch):
    """No $MBTRAIN_DATA, an empty cache, no system directories: load() sees only what a test puts there."""
    monkeypatch.delenv("MBTRAIN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for name, spec in datasets.catalog.IDX_DATASETS.items():
        monkeypatch.setitem(datasets.catalog.IDX_DATASETS, name,
                            datasets.catalog.IdxDataset(spec.name, spec.title, spec.mirrors, spec.md5))
    return tmp_path


# -- IDX -------------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_idx_pair_roundtrip(tmp_path, gz, dtype):
    images = np.random.default_rng(1).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    images[0, 0, :2] = (0, 255)
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    ip = write(tmp_path / "imgs", idx_bytes(images), gz)
    lp = write(tmp_path / "lbls", idx_bytes(labels), gz)
    X, y = datasets.read_idx_pair(ip, lp, dtype=dtype)
    assert X.shape == (5, 784) and X.dtype == np.dtype(dtype) and X.flags.c_contiguous
    np.testing.assert_array_equal(X, images.reshape(5, 784).astype(dtype) / np.dtype(dtype).type(255))
    assert X[0, 0] == 0.0 and X[0, 1] == 1.0 and X.min() >= 0 and X.max() <= 1
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, labels)


def test_read_idx_keeps_declared_type_and_shape(tmp_path):
    items = np.array([[-2, 300], [7, -32768]], dtype=np.int16)
    out = datasets.read_idx(write(tmp_path / "x.idx", idx_bytes(items, type_code=0x0B)))
    assert out.dtype == np.int16 and out.dtype.isnative
    np.testing.assert_array_equal(out, items)
    floats = np.array([0.5, -1.25], dtype=np.float64)
    np.testing.assert_array_equal(datasets.read_idx(write(tmp_path / "f.idx", idx_bytes(floats, 0x0E))), floats)


def test_gzip_is_recognised_by_content_not_name(tmp_path):
    labels = np.arange(7, dtype=np.uint8)
    gz_without_suffix = write(tmp_path / "labels-idx1-ubyte", idx_bytes(labels), gz=True)
    plain_with_suffix = write(tmp_path / "labels-idx1-ubyte.gz", idx_bytes(labels), gz=False)
    for path in (gz_without_suffix, plain_with_suffix):
        np.testing.assert_array_equal(datasets.read_idx_labels(path), labels)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("damage, message", [
    (lambda b: b"\x01\x02" + b[2:], "magic number"),
    (lambda b: b[:2] + b"\x07" + b[3:], "unknown IDX type code 0x07"),
    (lambda b: b[:3] + b"\x00" + b[4:], "0 dimensions"),
    (lambda b: b[:3], "only 3 bytes"),
    (lambda b: b[:10], "truncated IDX header"),
    (lambda b: b[:-5], "truncated or corrupted"),
    (lambda b: b + b"\x00\x00", "2 unexpected bytes"),
], ids=["magic", "type-code", "ndim", "tiny", "header", "payload", "extra"])
def test_damaged_idx_is_named_and_explained(tmp_path, gz, damage, message):
    good = idx_bytes(np.zeros((3, 4, 4), dtype=np.uint8))
    path = write(tmp_path / "train-images-idx3-ubyte", damage(good), gz)
    with pytest.raises(DataFormatError, match=message) as info:
        datasets.read_idx_images(path)
    assert str(info.value).startswith(str(path))


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_header_claiming_1e12_items_fails_fast_without_allocating(tmp_path, gz):
    # 1,275,510,205 images of 28x28: 10^12 bytes declared, 784 present.
    header = bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in (1_275_510_205, 28, 28))
    path = write(tmp_path / "huge-idx3-ubyte", header + bytes(784), gz)
    tracemalloc.start()
    try:
        with pytest.raises(DataFormatError, match=r"1,000,000,00\d,\d{3} bytes.*holds 800") as info:
            datasets.read_idx_images(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(path) in str(info.value)
    assert peak < 1 << 20  # bytes: nothing near the declared size was allocated


def test_truncated_and_corrupted_gzip_streams(tmp_path):
    data = gzip.compress(idx_bytes(np.random.default_rng(2).integers(0, 256, (50, 28, 28), dtype=np.uint8)))
    cut = write(tmp_path / "cut.gz", data[: len(data) // 2])
    with pytest.raises(DataFormatError, match="truncated gzip") as info:
        datasets.read_idx_images(cut)
    assert str(cut) in str(info.value)
    flipped = bytearray(data)
    flipped[len(data) // 2: len(data) // 2 + 64] = bytes(64)
    bad = write(tmp_path / "bad.gz", bytes(flipped))
    with pytest.raises(DataFormatError, match="gzip") as info:
        datasets.read_idx_images(bad)
    assert str(bad) in str(info.value)


def test_image_label_count_mismatch_names_both_files(tmp_path):
    ip = write(tmp_path / "imgs", idx_bytes(np.zeros((5, 2, 2), np.uint8)))
    lp = write(tmp_path / "lbls", idx_bytes(np.zeros(4, np.uint8)))
    with pytest.raises(DataFormatError, match="5 images.*4 labels") as info:
        datasets.read_idx_pair(ip, lp)
    assert str(ip) in str(info.value) and str(lp) in str(info.value)


def test_swapped_or_wrongly_typed_idx_files(tmp_path):
    images = write(tmp_path / "imgs", idx_bytes(np.zeros((5, 2, 2), np.uint8)))
    labels = write(tmp_path / "lbls", idx_bytes(np.zeros(5, np.uint8)))
    with pytest.raises(DataFormatError, match="is this a labels file"):
        datasets.read_idx_images(labels)
    with pytest.raises(DataFormatError, match="is this an image file"):
        datasets.read_idx_labels(images)
    floats = write(tmp_path / "float-imgs", idx_bytes(np.zeros((5, 2, 2), np.float32), type_code=0x0D))
    with pytest.raises(DataFormatError, match="unsigned bytes"):
        datasets.read_idx_images(floats)
    with pytest.raises(ValueError, match="dtype"):
        datasets.read_idx_images(images, dtype="float16")
    with pytest.raises(TypeError, match="path"):
        datasets.read_idx_images(42)


# -- the book's mnist.pkl.gz -----------------------------------------------

class Py2Pickler(pickle._Pickler):
    """Writes what Python 2's cPickle wrote at protocol 2: ``str`` as BINSTRING, ``numpy.core`` names.

    That is the form of the book's mnist.pkl.gz: numpy's raw array bytes are
    Python 2 strings, which plain ``pickle.load`` decodes as ASCII and fails on.
    """

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str

    def save_global(self, obj, name=None):
        module = obj.__module__.replace("numpy._core", "numpy.core")
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__name__}\n".encode())
        self.memoize(obj)


def book_like_sets(rng, sizes=(50, 10, 10)):
    # As in mnist.pkl.gz: float32 pixels k/256 in [0, 1), int64 labels.
    return tuple((rng.integers(0, 256, (n, 784)).astype(np.float32) / 256, rng.integers(0, 10, n).astype(np.int64))
                 for n in sizes)


def py2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_book_pickle_written_as_python2_reads(tmp_path, rng, dtype):
    sets = book_like_sets(rng)
    raw = py2_pickle(sets)
    with pytest.raises(UnicodeDecodeError):
        pickle.loads(raw)  # the classic failure this reader exists to avoid
    path = write(tmp_path / "mnist.pkl.gz", raw, gz=True)
    loaded = datasets.read_book_pickle(path, dtype=dtype)
    assert len(loaded) == 3
    for (X, y), (X0, y0) in zip(loaded, sets):
        assert X.dtype == np.dtype(dtype) and X.shape == X0.shape and y.dtype == np.int64
        np.testing.assert_array_equal(X, X0)
        np.testing.assert_array_equal(y, y0)


def test_book_pickle_from_python3_protocol2_and_uncompressed(tmp_path, rng):
    sets = book_like_sets(rng, sizes=(5, 3, 2))
    path = write(tmp_path / "mnist.pkl", pickle.dumps(sets, protocol=2))  # bytes as _codecs.encode
    (X, y), _, (Xt, _) = datasets.read_book_pickle(path)
    assert X.dtype == np.float32 and X.shape == (5, 784) and Xt.shape == (2, 784)
    np.testing.assert_array_equal(y, sets[0][1])


class _Exploit:
    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return self.func, (self.arg,)


@pytest.mark.parametrize("make", [
    lambda marker: _Exploit(os.system, f"touch {marker}"),
    lambda marker: _Exploit(eval, f"open({str(marker)!r}, 'w')"),
    lambda marker: _Exploit(__import__("codecs").encode, "x"),  # _codecs.encode without latin1
], ids=["os.system", "eval", "codecs"])
def test_malicious_pickle_is_refused_before_running(tmp_path, make):
    marker = tmp_path / "pwned"
    payload = ((make(marker), np.zeros(1)), (np.zeros((1, 784)), np.zeros(1)), (np.zeros((1, 784)), np.zeros(1)))
    path = write(tmp_path / "mnist.pkl.gz", pickle.dumps(payload, protocol=2), gz=True)
    with pytest.raises(UnsafePickleError, match="refusing") as info:
        datasets.read_book_pickle(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, pickle.UnpicklingError)
    assert not marker.exists()


@pytest.mark.parametrize("obj, message", [
    ({"train": 1}, "tuple of 3"),
    (((np.zeros((2, 784), np.float32), np.zeros(2, np.int64)),) * 2, "tuple of 3"),
    ((("x", "y"),) * 3, "pair of numpy arrays"),
    (((np.zeros(4, np.float32), np.zeros(4, np.int64)),) * 3, "2-D float"),
    (((np.full((2, 784), 255, np.float32), np.zeros(2, np.int64)),) * 3, r"scaled to \[0, 1\]"),
    (((np.zeros((2, 784), np.float32), np.zeros(3, np.int64)),) * 3, "2 images but 3 labels"),
    (((np.zeros((2, 784), np.float32), np.array([0.5, 1])),) * 3, "whole numbers"),
])
def test_book_pickle_with_wrong_contents(tmp_path, obj, message):
    path = write(tmp_path / "mnist.pkl.gz", pickle.dumps(obj, protocol=2), gz=True)
    with pytest.raises(DataFormatError, match=message) as info:
        datasets.read_book_pickle(path)
    assert str(path) in str(info.value)


def test_not_a_pickle(tmp_path):
    path = write(tmp_path / "mnist.pkl.gz", b"this is not a pickle", gz=True)
    with pytest.raises(DataFormatError, match="not a readable pickle"):
        datasets.read_book_pickle(path)


# -- .npz ------------------------------------------------------------------

def test_npz_uint8_images_are_flattened_and_scaled(tmp_path, rng):
    x_train = rng.integers(0, 256, (6, 28, 28), dtype=np.uint8)
    x_test = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=x_train, y_train=np.arange(6, dtype=np.uint8), x_test=x_test,
             y_test=np.arange(3, dtype=np.int32))
    X, y, Xt, yt = datasets.read_npz(path)
    assert X.shape == (6, 784) and Xt.shape == (3, 784) and X.dtype == np.float32
    np.testing.assert_array_equal(X, x_train.reshape(6, -1).astype(np.float32) / np.float32(255))
    assert y.dtype == yt.dtype == np.int64
    np.testing.assert_array_equal(yt, [0, 1, 2])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_npz_float_images_in_unit_interval(tmp_path, rng, dtype):
    x = rng.random((4, 10))
    path = tmp_path / "f.npz"
    np.savez(path, x_train=x, y_train=np.zeros(4), x_test=x[:2], y_test=np.ones(2))
    X, y, Xt, _ = datasets.read_npz(path, dtype=dtype)
    assert X.dtype == np.dtype(dtype)
    np.testing.assert_allclose(X, x, rtol=1e-7)
    assert y.dtype == np.int64


@pytest.mark.parametrize("arrays, message", [
    (dict(x_train=np.zeros((2, 3))), r"missing key\(s\) \['y_train', 'x_test', 'y_test'\]"),
    (dict(x_train=np.full((2, 3), 2.0), y_train=np.zeros(2), x_test=np.zeros((1, 3)), y_test=np.zeros(1)),
     r"x_train: float images must already be scaled to \[0, 1\], row 0"),
    (dict(x_train=np.zeros((2, 3), np.int16), y_train=np.zeros(2), x_test=np.zeros((1, 3)), y_test=np.zeros(1)),
     "must be uint8"),
    (dict(x_train=np.zeros((2, 3)), y_train=np.zeros(3), x_test=np.zeros((1, 3)), y_test=np.zeros(1)),
     "x_train has 2 rows but y_train has 3"),
    (dict(x_train=np.zeros((2, 3)), y_train=np.zeros(2), x_test=np.zeros((1, 4)), y_test=np.zeros(1)),
     "3 features per row but x_test has 4"),
    (dict(x_train=np.array([None, 1], dtype=object), y_train=np.zeros(2), x_test=np.zeros((1, 3)),
          y_test=np.zeros(1)), "allow_pickle"),
])
def test_npz_errors_name_file_and_key(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataFormatError, match=message) as info:
        datasets.read_npz(path)
    assert str(info.value).startswith(str(path))


def test_npz_that_is_not_an_archive(tmp_path):
    path = write(tmp_path / "x.npz", b"PK\x03\x04 definitely not a zip")
    with pytest.raises(DataFormatError, match="not a readable .npz"):
        datasets.read_npz(path)


# -- CSV -------------------------------------------------------------------

def test_csv_with_header_label_first(tmp_path):
    path = tmp_path / "mnist_train.csv"
    path.write_text("label,1x1,1x2,1x3\n5,0,255,51\n0,102,0,0\n")
    X, y = datasets.read_csv(path)
    assert X.dtype == np.float32 and X.shape == (2, 3)
    np.testing.assert_array_equal(X, np.array([[0, 255, 51], [102, 0, 0]], np.float32) / np.float32(255))
    np.testing.assert_array_equal(y, [5, 0])
    assert y.dtype == np.int64


def test_csv_without_header_label_last_gzipped_float64(tmp_path):
    path = write(tmp_path / "data.csv.gz", b"0.5,0.25,1\n0,1,9\n", gz=True)
    X, y = datasets.read_csv(path, label_column=-1, max_value=1, dtype="float64")
    assert X.dtype == np.float64
    np.testing.assert_array_equal(X, [[0.5, 0.25], [0, 1]])
    np.testing.assert_array_equal(y, [1, 9])
    with pytest.raises(DataFormatError, match=r"line 1, column 0 \(0-based\): label 0.5 is not a whole number"):
        datasets.read_csv(path, max_value=1)  # label_column=0 is the wrong column here


@pytest.mark.parametrize("text, options, message", [
    ("label,a,b\n1,2,3\n4,x,6\n", {}, r"line 3, column 1 \(0-based\): 'x' is not a number"),
    ("label,a,b\n1,2,3\n", {"header": False}, r"line 1, column 0 \(0-based\): 'label' is not a number"),
    ("1,2,3\n4,,6\n", {}, r"line 2, column 1 \(0-based\) is empty"),
    ("1,2,3\n\n4,5,6\n", {}, r"line 2, column 0 \(0-based\) is empty"),
    ("1,2,3\n4,5,6,7\n", {}, "lines of different lengths"),
    ("1,2,3\n4,5,256\n", {}, r"line 2, column 2 \(0-based\): 256 is outside \[0, 255\]"),
    ("1,2,3\n1.5,2,3\n", {}, r"line 2, column 0 \(0-based\): label 1.5 is not a whole number"),
    ("label,a\n", {}, "no data lines"),
    ("", {}, "empty file"),
    ("1;2;3\n", {}, "is the delimiter ',' right"),
    ("1,2,3\n4,\xff\xfe,6\n", {}, "not a CSV text file"),
])
def test_csv_errors_name_file_line_and_column(tmp_path, text, options, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(text.encode("latin1"))
    with pytest.raises(DataFormatError, match=message) as info:
        datasets.read_csv(path, **options)
    assert str(info.value).startswith(str(path))


def test_csv_argument_errors(tmp_path):
    path = tmp_path / "ok.csv"
    path.write_text("1,2,3\n")
    with pytest.raises(ValueError, match="label_column: 3 is out of range"):
        datasets.read_csv(path, label_column=3)
    with pytest.raises(TypeError, match="label_column"):
        datasets.read_csv(path, label_column="label")
    with pytest.raises(ValueError, match="max_value"):
        datasets.read_csv(path, max_value=0)
    with pytest.raises(ValueError, match="header"):
        datasets.read_csv(path, header="yes")


# -- named data sets -------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_digits_ship_with_the_package(dtype):
    X_train, y_train, X_test, y_test = datasets.load("digits", dtype=dtype)
    assert X_train.shape == (1497, 64) and X_test.shape == (300, 64)
    assert X_train.dtype == X_test.dtype == np.dtype(dtype)
    assert y_train.dtype == y_test.dtype == np.int64
    assert X_train.min() == 0 and X_train.max() == 1 and X_test.max() <= 1
    np.testing.assert_array_equal(np.bincount(y_test), np.full(10, 30))  # stratified: 30 per digit
    assert set(np.unique(y_train)) == set(range(10))
    again = datasets.load("DIGITS", dtype=dtype)
    for a, b in zip((X_train, y_train, X_test, y_test), again):
        np.testing.assert_array_equal(a, b)


def test_digits_match_scikit_learns_copy_without_importing_it():
    spec = importlib.util.find_spec("sklearn")  # locates, does not import
    if spec is None:
        pytest.skip("scikit-learn not installed: nothing to compare with")
    source = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
    raw = np.loadtxt(gzip.open(source), delimiter=",")
    X_train, y_train, X_test, y_test = datasets.load("digits", dtype="float64")
    with np.load(Path(datasets.__file__).parents[1] / "data" / "digits.npz") as archive:
        is_test = np.isin(np.arange(1797), archive["test_index"])
    np.testing.assert_array_equal(X_train * 16, raw[~is_test, :64])
    np.testing.assert_array_equal(X_test * 16, raw[is_test, :64])
    np.testing.assert_array_equal(y_test, raw[is_test, 64])
    # loading digits never imports scikit-learn (checked in a fresh process: other tests may import it)
    probe = "import sys, mbtrain.datasets as d; d.load('digits'); print('sklearn' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


def test_dataset_names():
    assert datasets.DATASETS == ("digits", "fashion-mnist", "mnist")
    assert datasets.catalog.canonical_name(" Fashion_MNIST ") == "fashion-mnist"
    assert datasets.catalog.canonical_name("MNIST") == "mnist"
    with pytest.raises(ValueError, match="unknown data set 'cifar10'; known: digits, fashion-mnist, mnist"):
        datasets.load("cifar10")
    with pytest.raises(TypeError, match="name"):
        datasets.load(None)
    with pytest.raises(ValueError, match="dtype"):
        datasets.load("digits", dtype="int8")


def test_search_order_data_dir_then_env_then_cache(isolated_search_path, monkeypatch):
    root = isolated_search_path
    env_root = root / "env"
    monkeypatch.setenv("MBTRAIN_DATA", str(env_root))
    write_idx_set(root / "cache" / "mbtrain" / "mnist", label_offset=4)
    assert datasets.load("mnist", download=False)[1][0] == 4
    write_idx_set(env_root, label_offset=3, gz=False)
    assert datasets.load("mnist", download=False)[1][0] == 3
    write_idx_set(env_root / "mnist", label_offset=2)
    assert datasets.load("mnist", download=False)[1][0] == 2
    arrays = write_idx_set(root / "mine", label_offset=1)
    X_train, y_train, X_test, y_test = datasets.load("mnist", data_dir=root / "mine", download=False)
    assert y_train[0] == 1
    np.testing.assert_array_equal(X_test * np.float32(255), arrays["t10k-images-idx3-ubyte"].reshape(4, 12))
    assert datasets.locate("mnist", root / "mine")["train_images"] == root / "mine" / "train-images-idx3-ubyte.gz"


def test_damaged_file_on_search_path_is_reported_not_skipped(isolated_search_path):
    root = isolated_search_path
    write_idx_set(root / "cache" / "mbtrain" / "mnist")  # a good copy later on the path
    write_idx_set(root / "mine")
    bad = root / "mine" / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:-8])
    with pytest.raises(DataFormatError) as info:
        datasets.load("mnist", data_dir=root / "mine", download=False)
    assert str(bad) in str(info.value)


def test_partial_set_outside_the_cache_is_an_error(isolated_search_path):
    mine = isolated_search_path / "mine"
    write_idx_set(mine)
    (mine / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="but not t10k-labels-idx1-ubyte"):
        datasets.load("mnist", data_dir=mine, download=False)


def test_nothing_found_without_download_lists_where_it_looked(isolated_search_path):
    with pytest.raises(FileNotFoundError, match="download=False") as info:
        datasets.load("mnist", data_dir=isolated_search_path / "nowhere", download=False)
    assert str(isolated_search_path / "nowhere") in str(info.value)
    assert str(isolated_search_path / "cache" / "mbtrain" / "mnist") in str(info.value)


def test_cache_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert datasets.cache_dir("Fashion_MNIST") == tmp_path / "mbtrain" / "fashion-mnist"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert datasets.cache_dir() == Path.home() / ".cache" / "mbtrain"


# -- Fashion-MNIST from Debian's dataset-fashion-mnist ---------------------

needs_debian_fashion = pytest.mark.skipif(
    not all((DEBIAN_FASHION / f"{name}.gz").is_file() for name in IDX_NAMES),
    reason="Debian's dataset-fashion-mnist is not installed",
)


@pytest.fixture(scope="module")
def fashion():
    saved = {k: os.environ.pop(k, None) for k in ("MBTRAIN_DATA", "XDG_CACHE_HOME")}
    os.environ["XDG_CACHE_HOME"] = "/nonexistent-mbtrain-test-cache"
    try:
        tracemalloc.start()
        try:
            arrays = datasets.load("fashion-mnist", download=False)
            return arrays, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None)
            if v is not None:
                os.environ[k] = v


@needs_debian_fashion
def test_fashion_mnist_from_debian(fashion):
    (X_train, y_train, X_test, y_test), peak = fashion
    assert X_train.shape == (60000, 784) and X_test.shape == (10000, 784)
    assert X_train.dtype == X_test.dtype == np.float32
    assert X_train.flags.c_contiguous and X_train.flags.owndata
    assert X_train.min() == 0 and X_train.max() == 1 and X_test.min() >= 0 and X_test.max() <= 1
    assert y_train.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(y_train), np.full(10, 6000))
    np.testing.assert_array_equal(np.bincount(y_test), np.full(10, 1000))
    # one float copy of the images and the labels, plus one image file's bytes at a time (measured 1.07x)
    loaded = sum(a.nbytes for a in (X_train, y_train, X_test, y_test))
    assert peak < 1.3 * loaded


@needs_debian_fashion
def test_debian_fashion_mnist_is_the_published_data():
    # Debian recompressed the .gz files (so the published .gz MD5s do not match),
    # but the decompressed IDX files are byte-identical to the published ones.
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", "train-labels-idx1-ubyte"):
        content = gzip.decompress((DEBIAN_FASHION / f"{name}.gz").read_bytes())
        assert hashlib.md5(content).hexdigest() == FASHION_MNIST.raw_md5[name]


@needs_debian_fashion
def test_fashion_mnist_test_set_in_float64():
    X, y = datasets.read_idx_pair(DEBIAN_FASHION / "t10k-images-idx3-ubyte.gz",
                                  DEBIAN_FASHION / "t10k-labels-idx1-ubyte.gz", dtype="float64")
    assert X.shape == (10000, 784) and X.dtype == np.float64 and X.max() == 1.0 and y.max() == 9


# -- splits ----------------------------------------------------------------

def rows_and_labels(n=1000, width=3):
    X = np.repeat(np.arange(n, dtype=np.float64)[:, None], width, axis=1)  # row i holds i
    return X, np.arange(n) % 10


def test_split_reproducible_disjoint_and_covering():
    X, y = rows_and_labels()
    a = datasets.train_validation_split(X, y, n_validation=200, seed=7)
    b = datasets.train_validation_split(X, y, n_validation=200, seed=7)
    c = datasets.train_validation_split(X, y, n_validation=200, seed=8)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[2], c[2])
    X_tr, y_tr, X_val, y_val = a
    assert X_tr.shape == (800, 3) and X_val.shape == (200, 3) and y_val.shape == (200,)
    train_rows, val_rows = X_tr[:, 0].astype(int), X_val[:, 0].astype(int)
    assert not set(train_rows) & set(val_rows)
    np.testing.assert_array_equal(np.sort(np.concatenate([train_rows, val_rows])), np.arange(1000))
    np.testing.assert_array_equal(y_val, val_rows % 10)  # rows and labels stay paired
    assert np.all(np.diff(train_rows) > 0)  # original order kept
    assert not np.shares_memory(X_tr, X)


def test_split_by_fraction_and_with_target_matrix():
    X, y = rows_and_labels(n=100)
    Y = np.eye(10)[y]
    X_tr, Y_tr, X_val, Y_val = datasets.train_validation_split(X, Y, n_validation=0.25, seed=0)
    assert X_val.shape == (25, 3) and Y_val.shape == (25, 10) and Y_tr.shape == (75, 10)


@pytest.mark.parametrize("n_validation, error", [
    (0, ValueError), (100, ValueError), (1.0, ValueError), (0.001, ValueError), ("10", TypeError), (True, TypeError),
])
def test_split_rejects_bad_sizes(n_validation, error):
    X, y = rows_and_labels(n=100)
    with pytest.raises(error, match="n_validation"):
        datasets.train_validation_split(X, y, n_validation=n_validation)


def test_split_rejects_mismatched_rows():
    X, y = rows_and_labels(n=100)
    with pytest.raises(ValueError, match="y: has 99 rows but X has 100"):
        datasets.train_validation_split(X, y[:99])


def test_book_split_is_first_50000_last_10000_as_views():
    X = np.zeros((60000, 2), dtype=np.float32)
    y = np.arange(60000)
    X_tr, y_tr, X_val, y_val = datasets.book_split(X, y)
    assert X_tr.shape == (50000, 2) and X_val.shape == (10000, 2)
    assert y_tr[-1] == 49999 and y_val[0] == 50000 and y_val[-1] == 59999
    assert np.shares_memory(X_tr, X) and np.shares_memory(X_val, X)
    with pytest.raises(ValueError, match="n_validation"):
        datasets.book_split(X[:100], y[:100])
