"""Issue 16: the data readers against hostile files (items 1, 2, 6 and the IDX part of 8).

Each hostile file is built here by hand. A case that used to crash the
interpreter runs in a subprocess, so that a crash fails the test instead of
killing pytest; peak memory is bounded with tracemalloc (which sees Python's
and numpy's allocations) or, where the danger is resident memory, with the
subprocess's ``ru_maxrss`` measured after its imports.
"""
import gzip
import io
import json
import pickle
import pickletools
import re
import struct
import subprocess
import sys
import textwrap
import tracemalloc
import zipfile

import numpy as np
import pytest

from mbtrain import datasets
from mbtrain.datasets import DataFormatError, UnsafePickleError
from test_datasets import book_like_sets, py2_pickle

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct

SMALL = 16 * 2**20  # bytes: what a reader may allocate on a tiny hostile file
MB = 2**20


# -- helpers -------------------------------------------------------------------

class Reduce:
    """Pickles as ``func(*args)``, then BUILD with ``state`` when given: any call a hostile file can make."""

    def __init__(self, func, args, state=None):
        self.reduce = (func, args) if state is None else (func, args, state)

    def __reduce__(self):
        return self.reduce


def book_with(labels, protocol=2) -> bytes:
    """The book's layout, with ``labels`` (anything picklable) as the training labels."""
    X = np.zeros((16, 784), np.float32)
    y = np.zeros(16, np.int64)
    return pickle.dumps(((X, labels), (X, y), (X, y)), protocol=protocol)


def gzip_of_zeros(n_bytes: int, prefix: bytes = b"", suffix: bytes = b"") -> bytes:
    """``prefix + n_bytes zeros + suffix`` gzipped, without ever holding the zeros."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6) as f:  # ~1000:1 on zeros
        f.write(prefix)
        zeros = bytes(MB)
        for start in range(0, n_bytes, MB):
            f.write(zeros[:min(MB, n_bytes - start)])
        f.write(suffix)
    return out.getvalue()


def traced_peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def run_isolated(call: str) -> dict:
    """Run ``call`` (a reader call on files already written) in a fresh interpreter.

    Returns its outcome (``"ok"`` or ``"ErrorType: message"``) and how far its
    peak resident memory grew during the call, in MiB. A crash (segfault,
    abort) fails the calling test through the exit status.
    """
    code = textwrap.dedent(f"""
        import json, resource
        import numpy, pandas
        from mbtrain import datasets
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            {call}
            outcome = "ok"
        except Exception as exc:
            outcome = f"{{type(exc).__name__}}: {{exc}}"
        grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
        print(json.dumps({{"outcome": outcome, "grew_mib": grew}}))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"the reader crashed the interpreter (exit {done.returncode}): {done.stderr[-2000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- item 1: the pickle may not call numpy.ndarray, nor build arrays larger than its bytes ---------

@pytest.mark.parametrize("offset", [-2_000_000_000, -48], ids=["segfault", "heap-leak"])
def test_ndarray_over_a_negative_offset_is_refused_without_crashing(tmp_path, offset):
    """ndarray((16,), 'u1', buffer, offset<0) read outside the buffer: a segfault, or heap bytes as labels."""
    path = tmp_path / "mnist.pkl.gz"
    path.write_bytes(gzip.compress(book_with(Reduce(np.ndarray, ((16,), "u1", bytes(16), offset)))))
    result = run_isolated(f"datasets.read_book_pickle({str(path)!r})")
    assert result["outcome"].startswith(f"UnsafePickleError: {path}: refusing to call numpy.ndarray")


@pytest.mark.parametrize("args", [
    ((200_000, 784), "f8"),  # 1.25 GB of "valid" zeros
    ((1_048_576, 784), "f4", bytes(4), 0, (0, 0)),  # zero strides: 3 GB of view over 4 bytes
], ids=["allocation", "zero-strides"])
def test_ndarray_calls_are_refused_in_bounded_memory(tmp_path, args):
    path = tmp_path / "mnist.pkl.gz"
    path.write_bytes(gzip.compress(book_with(Reduce(np.ndarray, args))))
    result = run_isolated(f"datasets.read_book_pickle({str(path)!r})")
    assert result["outcome"].startswith(f"UnsafePickleError: {path}: refusing to call numpy.ndarray")
    assert result["grew_mib"] < 64
    assert traced_peak(lambda: pytest.raises(UnsafePickleError, datasets.read_book_pickle, path)) < SMALL


def array_state(shape, dtype, data, fortran=False):
    """What numpy's BUILD gives an array: ``(1, shape, dtype, is_fortran, bytes)``."""
    return Reduce(_reconstruct, (np.ndarray, (0,), b"b"), (1, shape, np.dtype(dtype), fortran, data))


@pytest.mark.parametrize("labels, message", [
    (array_state((200_000, 784), "f8", bytes(16)), r"declares shape \(200000, 784\) of float64, i\.e\. "
                                                   r"1,254,400,000 bytes, from 16 bytes"),
    (array_state((4,), "i8", bytes(8)), "from 8 bytes"),  # fewer bytes than the shape needs
    (array_state((1,), "i8", bytes(16)), "from 16 bytes"),  # more
    (array_state((2,), object, [1, 2]), r"refusing numpy\.dtype\('O8'"),
    (array_state((2,), "V8", bytes(16)), r"refusing numpy\.dtype\('V8'"),
    (array_state((2,), [("a", "<f4")], bytes(8)), r"refusing numpy\.dtype\('V4'"),
    (array_state((1,) * 40, "u1", bytes(1)), "at most 32 sizes"),
    (array_state((-1,), "u1", b""), "refusing array shape"),
    (Reduce(_reconstruct, (np.ndarray, (0,), b"b"), (1, (2,), "f8", False, bytes(16))), "item type 'f8'"),
    (Reduce(_reconstruct, (np.ndarray, (0,), b"b"), (2, (2,), np.dtype("f8"), False, bytes(16))), "array state"),
    (Reduce(_reconstruct, (np.ndarray, (0,), b"b")), "never given its data"),
    (Reduce(_reconstruct, (np.dtype, (0,), b"b")), r"refusing _reconstruct\(numpy\.dtype"),
    (Reduce(_reconstruct, (np.ndarray, (10**9,), b"b")), r"refusing _reconstruct"),
    (Reduce(np.dtype, ("f4", False, True), (3, "<", None, ("a",), {"a": (np.dtype("f4"), 0)}, 4, 1, 16)),
     r"refusing numpy\.dtype\('f4'\) state"),
    (Reduce(np.matrix, ([[1]],)), "refusing to load global numpy"),
], ids=["huge-shape", "short", "long", "object", "void", "structured", "ndim", "negative", "dtype-as-text",
        "state-version", "no-build", "subtype", "reconstruct-shape", "dtype-fields", "matrix"])
def test_array_reconstruction_checks_every_part_before_allocating(tmp_path, labels, message):
    path = tmp_path / "mnist.pkl.gz"
    path.write_bytes(gzip.compress(book_with(labels)))

    def read():
        with pytest.raises(UnsafePickleError, match=message) as info:
            datasets.read_book_pickle(path)
        assert str(info.value).startswith(f"{path}: ")
    assert traced_peak(read) < SMALL


def with_second_build(data: bytes) -> bytes:
    """``data`` (a pickled array, protocol 2) with its state fetched from the memo and BUILT once more."""
    ops = list(pickletools.genops(data))
    assert ops[-2][0].name == "BUILD" and ops[-3][0].name == "BINPUT"
    index = ops[-3][1]
    return data[:-1] + b"h" + bytes([index]) + b"b."


@pytest.mark.parametrize("payload, message", [
    (with_second_build(pickle.dumps(np.zeros(2), protocol=2)), "second BUILD of an array"),
    (b"\x80\x02cnumpy\ndtype\n}b.", "refusing BUILD on numpy.dtype"),
    (b"\x80\x02cnumpy\nndarray\n}b.", "refusing BUILD on numpy.ndarray"),
    (b"\x80\x02c_codecs\nencode\nN}\x86b.", "refusing BUILD on _codecs.encode"),  # slot state
    (b"\x80\x02cnumpy\nndarray\nK\x01\x85R.", r"refusing to call numpy\.ndarray\(1,\)"),
    (b"\x80\x02c__builtin__\nbytes\nK\x05\x85R.", r"refusing bytes\(5,\)"),
], ids=["array-twice", "global", "ndarray-marker", "slot-state", "ndarray-call", "bytes-call"])
def test_nothing_the_pickle_reaches_can_be_given_a_state_twice_or_called_freely(tmp_path, payload, message):
    path = tmp_path / "odd.pkl"
    path.write_bytes(payload)
    with pytest.raises(UnsafePickleError, match=message) as info:
        datasets.read_book_pickle(path)
    assert str(info.value).startswith(f"{path}: ")


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("gz", [True, False], ids=["gz", "plain"])
def test_book_pickles_written_by_numpy_load_bit_exactly(tmp_path, rng, protocol, gz):
    sets = book_like_sets(rng, sizes=(40, 7, 5))
    sets = ((np.asfortranarray(sets[0][0]), sets[0][1]),) + sets[1:]  # a Fortran-order array too
    raw = pickle.dumps(sets, protocol=protocol)
    path = tmp_path / "mnist.pkl.gz"
    path.write_bytes(gzip.compress(raw) if gz else raw)
    loaded = datasets.read_book_pickle(path)
    for (X, y), (X0, y0) in zip(loaded, sets):
        assert X.dtype == np.float32 and X.shape == X0.shape and y.dtype == np.int64
        assert X.tobytes() == np.ascontiguousarray(X0).tobytes() and y.tobytes() == y0.tobytes()
        assert X.flags.writeable and y.flags.writeable


def test_python2_book_pickle_loads_bit_exactly_and_within_a_small_multiple_of_its_size(tmp_path, rng):
    sets = book_like_sets(rng, sizes=(2000, 100, 100))
    raw = py2_pickle(sets)
    path = tmp_path / "mnist.pkl.gz"
    path.write_bytes(gzip.compress(raw))
    loaded = []
    peak = traced_peak(lambda: loaded.append(datasets.read_book_pickle(path)))
    for (X, y), (X0, y0) in zip(loaded[0], sets):
        assert X.tobytes() == X0.tobytes() and y.tobytes() == y0.tobytes()
    assert peak < 4 * len(raw)


# -- item 2: the pickle and IDX files are decompressed only as far as they can be honest -----------

def test_pickle_of_gzipped_zeros_fails_at_its_first_byte(tmp_path):
    """256 MiB of zeros in a 250 KB .gz: byte 0 is no pickle opcode, so almost nothing is decompressed."""
    path = tmp_path / "zeros.pkl.gz"
    path.write_bytes(gzip_of_zeros(256 * MB))

    def read():
        with pytest.raises(DataFormatError, match="not a readable pickle.*unknown opcode") as info:
            datasets.read_book_pickle(path)
        assert str(info.value).startswith(str(path))
    assert traced_peak(read) < 2 * MB


@pytest.mark.parametrize("opcode, length_format", [(b"\x8e", "<Q"), (b"B", "<I"), (b"T", "<i")],
                         ids=["BINBYTES8", "BINBYTES", "BINSTRING"])
def test_pickle_strings_beyond_max_bytes_are_refused_before_reading(tmp_path, opcode, length_format):
    declared = 2**31 - 1  # above the default cap of 1 GiB
    path = tmp_path / "big.pkl.gz"
    path.write_bytes(gzip_of_zeros(4 * MB, prefix=b"\x80\x02" + opcode + struct.pack(length_format, declared)))

    def read():
        with pytest.raises(DataFormatError, match=r"more than max_bytes=1,073,741,824 bytes") as info:
            datasets.read_book_pickle(path)
        assert str(info.value).startswith(str(path))
    assert traced_peak(read) < 2 * MB


def test_pickle_holding_more_than_max_bytes_is_refused_at_the_cap(tmp_path):
    """64 strings of 1 MiB (each popped): 64 MiB truly held, read only up to max_bytes=8 MiB."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb") as f:
        f.write(b"\x80\x02")
        for _ in range(64):
            f.write(b"B" + struct.pack("<I", MB) + bytes(MB) + b"0")  # BINBYTES, POP
        f.write(b"N.")
    path = tmp_path / "big.pkl.gz"
    path.write_bytes(out.getvalue())

    def read():
        with pytest.raises(DataFormatError, match="more than max_bytes=8,388,608") as info:
            datasets.read_book_pickle(path, max_bytes=8 * MB)
        assert str(info.value).startswith(str(path))
    assert traced_peak(read) < 12 * MB
    with pytest.raises(ValueError, match="max_bytes"):
        datasets.read_book_pickle(path, max_bytes=0)


def test_pickle_followed_by_other_bytes_or_cut_short(tmp_path, rng):
    raw = pickle.dumps(book_like_sets(rng, sizes=(3, 2, 2)), protocol=2)
    extra = tmp_path / "extra.pkl.gz"
    extra.write_bytes(gzip.compress(raw + b"\0" * 5))
    with pytest.raises(DataFormatError, match="5 unexpected bytes after the pickle's STOP"):
        datasets.read_book_pickle(extra)
    cut = tmp_path / "cut.pkl"
    cut.write_bytes(raw[:-40])
    with pytest.raises(DataFormatError, match="not a readable pickle.*ends before its STOP"):
        datasets.read_book_pickle(cut)


def idx_header(type_code, shape) -> bytes:
    return bytes([0, 0, type_code, len(shape)]) + b"".join(d.to_bytes(4, "big") for d in shape)


def test_idx_of_gzipped_zeros_fails_on_its_header(tmp_path):
    """The issue's case: 1 MB of compressed zeros peaked at 2.1 GB before "unknown IDX type code"."""
    path = tmp_path / "zeros-idx3-ubyte.gz"
    path.write_bytes(gzip_of_zeros(256 * MB))

    def read():
        with pytest.raises(DataFormatError, match="unknown IDX type code 0x00") as info:
            datasets.read_idx_images(path)
        assert str(info.value).startswith(str(path))
    assert traced_peak(read) < 2 * MB


def test_idx_header_declaring_more_than_the_gzip_can_hold_is_counted_not_kept(tmp_path):
    # 10^9 bytes declared; the stream holds 64 MiB of zeros in ~64 KB, which can never expand to 10^9.
    path = tmp_path / "claims-idx3-ubyte.gz"
    path.write_bytes(gzip_of_zeros(64 * MB, prefix=idx_header(8, (1_000_000, 1000))))

    def read():
        with pytest.raises(DataFormatError, match=r"declares shape \(1000000, 1000\).*1,000,000,012 bytes, "
                                                  r"but the file holds 67,108,876") as info:
            datasets.read_idx_images(path)
        assert str(info.value).startswith(str(path))
    assert traced_peak(read) < 2 * MB


def test_idx_stream_longer_than_its_header_keeps_only_what_it_declares(tmp_path):
    declared = 4 * MB
    path = tmp_path / "long-idx1-ubyte.gz"
    path.write_bytes(gzip_of_zeros(declared + 32 * MB, prefix=idx_header(8, (declared,))))

    def read():
        with pytest.raises(DataFormatError, match=r"corrupted: more than 1,048,576 unexpected bytes after the "
                                                  r"4,194,312 that the header \(shape \(4194304,\), uint8\)"):
            datasets.read_idx_labels(path)
    assert traced_peak(read) < declared + 2 * MB


def test_idx_stream_shorter_than_its_header_costs_only_what_it_holds(tmp_path):
    """1 GB declared and within what 16 MiB of incompressible data could hold; only the 16 MiB is resident."""
    rng = np.random.default_rng(0)
    path = tmp_path / "short-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_header(8, (1_000_000, 1000)) + rng.bytes(16 * MB), compresslevel=1))
    result = run_isolated(f"datasets.read_idx({str(path)!r})")
    assert result["outcome"].startswith(f"DataFormatError: {path}: truncated or corrupted")
    assert "but the file holds 16,777,228" in result["outcome"]
    assert result["grew_mib"] < 16 + 48


def test_honest_gzipped_idx_reads_as_before(tmp_path, rng):
    images = rng.integers(0, 256, (300, 28, 28), dtype=np.uint8)
    path = tmp_path / "imgs.gz"
    path.write_bytes(gzip.compress(idx_header(8, images.shape) + images.tobytes()))
    items = datasets.read_idx(path)
    np.testing.assert_array_equal(items, images)
    assert not items.flags.writeable  # a view over the file's bytes, as for a plain file
    assert traced_peak(lambda: datasets.read_idx(path)) < images.nbytes + 2 * MB


# -- item 8: an IDX header with an absurd number of dimensions --------------------------------------

@pytest.mark.parametrize("ndim", [33, 65, 255])
@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_idx_header_with_too_many_dimensions_is_a_format_error(tmp_path, ndim, gz):
    data = idx_header(8, (1,) * ndim) + b"\x07"  # a file that is otherwise consistent
    path = tmp_path / "dims.idx"
    path.write_bytes(gzip.compress(data) if gz else data)
    for reader in (datasets.read_idx, datasets.read_idx_images, datasets.read_idx_labels):
        with pytest.raises(DataFormatError, match=rf"declares {ndim} dimensions \(byte 3\); between 1 and 32") as info:
            reader(path)
        assert str(info.value).startswith(str(path))
    ok = idx_header(8, (1,) * 32) + b"\x07"
    path.write_bytes(gzip.compress(ok) if gz else ok)
    assert datasets.read_idx(path).shape == (1,) * 32


# -- .npz: memory bounded by the declared shapes and the bytes present --------------------------------

def test_npz_member_whose_sizes_all_lie_costs_only_the_bytes_present(tmp_path):
    """Zip directory and .npy header agree on 400 MB, a ratio deflate could reach; the stream holds 512 KB."""
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "|u1", "fortran_order": False, "shape": (400 * MB,)})
    member = buffer.getvalue() + rng.bytes(512 * 1024)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x_train.npy", member)
    data = bytearray(out.getvalue())
    claimed = struct.pack("<I", len(member) - 512 * 1024 + 400 * MB)
    local, central = data.find(b"PK\x03\x04"), data.rfind(b"PK\x01\x02")
    data[local + 22:local + 26] = claimed
    data[central + 24:central + 28] = claimed
    path = tmp_path / "liar.npz"
    path.write_bytes(bytes(data))
    info = zipfile.ZipFile(path).getinfo("x_train.npy")
    assert info.file_size < 1032 * info.compress_size  # so the ratio check alone does not refuse it
    result = run_isolated(f"datasets._io.NpzMembers({str(path)!r}).read('x_train')")
    assert result["outcome"] == f"DataFormatError: {path}: x_train: truncated: 524,288 of 419,430,400 bytes"
    assert result["grew_mib"] < 64


# -- item 6: CSV ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_csv_byte_order_mark_is_not_a_header(tmp_path, gz):
    data = "\ufeff5,0,255\n3,51,0\n".encode()
    path = tmp_path / "bom.csv"
    path.write_bytes(gzip.compress(data) if gz else data)
    X, y = datasets.read_csv(path)
    np.testing.assert_array_equal(y, [5, 3])
    np.testing.assert_array_equal(X, np.array([[0, 255], [51, 0]], np.float32) / np.float32(255))
    path.write_bytes("\ufefflabel,a,b\n5,0,255\n".encode())
    X, y = datasets.read_csv(path)
    np.testing.assert_array_equal(y, [5])


@pytest.mark.parametrize("label, problem", [
    ("1e309", "is not finite"), ("-inf", "is not finite"), ("nan", "is not finite"),
    ("1e20", "is out of range"), ("99999999999999999999", "is out of range"),
    ("-9223372036854775809", "is out of range"),
    ("2.5", "is not a whole number"), ("x", "is not a number"), ("1_0", "is not a number"),
])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_csv_labels_that_are_not_exact_integers_are_named(tmp_path, label, problem, dtype):
    path = tmp_path / "labels.csv"
    path.write_text(f"label,a\n1,0\n{label},7\n")
    with pytest.raises(DataFormatError, match=rf"line 3, column 0 \(0-based\): label .* {problem}") as info:
        datasets.read_csv(path, dtype=dtype)
    assert str(info.value).startswith(str(path))
    path.write_text(f"0,{label}\n")  # the same text as the last column, read with label_column=-1
    with pytest.raises(DataFormatError, match=rf"line 1, column 1 \(0-based\): label .* {problem}"):
        datasets.read_csv(path, label_column=-1, header=False, dtype=dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_csv_labels_are_read_exactly_whatever_the_feature_type(tmp_path, dtype):
    big = [16_777_217, 2**53 + 1, -(2**63), 2**63 - 1]  # none survives float32; the last three not float64
    path = tmp_path / "big.csv"
    path.write_text("".join(f"{label},1\n" for label in big) + "3.0,0\n")
    X, y = datasets.read_csv(path, dtype=dtype)
    assert y.dtype == np.int64 and y.tolist() == big + [3]
    assert X.dtype == np.dtype(dtype)


@pytest.mark.parametrize("max_value, dtype", [(1e-320, "float32"), (1e-320, "float64"), (1e-40, "float32"),
                                              (1e39, "float32")])
def test_csv_max_value_must_be_a_normal_number_of_the_dtype(tmp_path, max_value, dtype):
    path = tmp_path / "ok.csv"
    path.write_text("1,0,0.5\n")
    with pytest.raises(ValueError, match=re.escape(f"max_value: {max_value!r} is not a normal {dtype} number")):
        datasets.read_csv(path, max_value=max_value, dtype=dtype)


def test_csv_tiny_but_normal_max_value_gives_finite_features(tmp_path):
    path = tmp_path / "tiny.csv"
    path.write_text("1,0,1e-300,5e-301\n")
    X, _ = datasets.read_csv(path, max_value=1e-300, dtype="float64")
    assert X[0, 1] == 1 and np.isfinite(X).all()
    np.testing.assert_allclose(X, [[0, 1, 0.5]], rtol=1e-15)
    path.write_text("1,0,1e-299\n")  # 10 x max_value: refused before dividing, with the value as written
    with pytest.raises(DataFormatError, match=r"line 1, column 2 \(0-based\): 1e-299 is outside \[0, 1e-300\]"):
        datasets.read_csv(path, max_value=1e-300, dtype="float64")


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_csv_line_of_800000_columns_is_refused_in_bounded_memory(tmp_path, gz):
    """The issue's case: 1.6 MB, one line, 800,000 columns cost 1.25 GB of RSS and 16 s."""
    data = ("1," + ",".join(["0"] * 800_000) + "\n").encode()
    path = tmp_path / "wide.csv"
    path.write_bytes(gzip.compress(data) if gz else data)
    result = run_isolated(f"datasets.read_csv({str(path)!r})")
    assert result["outcome"] == (f"DataFormatError: {path}: line 1 has 800,001 columns, more than "
                                 f"max_columns=100,000")
    assert result["grew_mib"] < 48
    assert traced_peak(lambda: pytest.raises(DataFormatError, datasets.read_csv, path)) < SMALL


def test_csv_wide_line_after_a_narrow_one_is_refused_in_bounded_memory(tmp_path):
    path = tmp_path / "wide-later.csv"
    path.write_text("label,a,b\n1,2,3\n" + ",".join(["0"] * 800_000) + "\n")
    result = run_isolated(f"datasets.read_csv({str(path)!r})")
    assert result["outcome"].startswith(f"DataFormatError: {path}: lines of different lengths")
    assert result["grew_mib"] < 96


def test_csv_line_1_longer_than_max_columns_allows(tmp_path):
    path = tmp_path / "long.csv"
    path.write_text("1," + "9" * (64 * 10 + 1) + "\n")
    with pytest.raises(DataFormatError, match=r"line 1 is longer than 640 characters"):
        datasets.read_csv(path, max_columns=10)
    path.write_text("1,2,3\n4,5,6\n")
    assert datasets.read_csv(path, max_columns=3)[0].shape == (2, 2)
    with pytest.raises(DataFormatError, match="line 1 has 3 columns, more than max_columns=2"):
        datasets.read_csv(path, max_columns=2)
    for bad in (1, 2.5, True, None):
        with pytest.raises(ValueError, match="max_columns"):
            datasets.read_csv(path, max_columns=bad)
    with pytest.raises(ValueError, match="delimiter"):
        datasets.read_csv(path, delimiter=",,")
