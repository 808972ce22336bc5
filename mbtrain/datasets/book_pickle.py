"""The book's ``mnist.pkl.gz``, read safely under Python 3.

The file is a Python 2 pickle of three ``(images, labels)`` pairs::

    ((train_x, train_y), (val_x, val_y), (test_x, test_y))
    train_x (50000, 784) float32 in [0, 1], train_y (50000,) int64, 10,000 rows each for val and test

Two things go wrong with a plain ``pickle.load``. Under Python 3 it fails with
``UnicodeDecodeError: 'ascii' codec can't decode byte ...``, because Python 2
``str`` objects (numpy's raw array bytes among them) are decoded as ASCII;
``encoding="latin1"`` maps each byte to one character and numpy turns them back
into the same bytes. And a pickle is a program: loading one from an untrusted
source can run any code. :class:`RestrictedUnpickler` therefore resolves only
the few globals numpy arrays are rebuilt from and refuses every other one.

Code is not the only danger: CPython's unpickler sizes its memo table by the
largest index a ``PUT`` names, so a 12-byte pickle can make it allocate and
clear gigabytes. :func:`check_opcodes` reads the opcode stream first (without
running it) and refuses opcodes the book's file never uses and memo indices no
honest writer produces, so memory stays bounded by the file's content.

Reading a pickle is always the caller's explicit choice: :func:`mbtrain.datasets.load`
never opens one; only :func:`read_book_pickle`, given a path, does.
"""
from __future__ import annotations

import io
import pickle
import pickletools

import numpy as np

from .._validation import check_dtype
from ._convert import integer_labels, unit_interval_floats
from ._io import DataFormatError, as_path, gunzip, is_gzip

SPLITS = ("train", "validation", "test")

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct as _np_reconstruct


class UnsafePickleError(pickle.UnpicklingError, ValueError):
    """A pickle asked for a global outside the numpy-array allow-list."""


def _reconstruct(subtype, shape, dtype):
    # numpy pickles always pass shape (0,); the real shape comes with the state
    # and numpy checks it against the bytes present. Ignoring the given shape
    # means a hostile file cannot make us allocate more than it holds.
    if subtype is not np.ndarray:
        raise UnsafePickleError(f"refusing to rebuild an array of type {subtype!r}; only numpy.ndarray is allowed")
    return _np_reconstruct(np.ndarray, (0,), dtype)


def _latin1_encode(text, encoding="utf-8"):
    # Python 3 writes bytes at protocol 2 as _codecs.encode(text, "latin1");
    # any other codec is refused (codecs can do far more than encode text).
    if not isinstance(text, str) or encoding.replace("-", "").lower() != "latin1":
        raise UnsafePickleError(f"refusing _codecs.encode with encoding {encoding!r}; only 'latin1' is allowed")
    return text.encode("latin1")


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays, tuples, lists and scalars, and nothing else.

    ``find_class`` is the only door through which a pickle reaches code; this
    one opens it to the allow-list in ``ALLOWED`` and raises
    :class:`UnsafePickleError` for every other global (``os.system``,
    ``builtins.eval``, ``subprocess.Popen`` ...), before anything is called.
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,  # written by numpy 1.x and Python 2
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,  # written by numpy 2
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }

    def find_class(self, module, name):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to load global {module}.{name}: this reader only rebuilds numpy arrays "
                f"(a pickle can run arbitrary code; see mbtrain.datasets.read_book_pickle)"
            ) from None


# Opcodes that build the book's file (numpy arrays in tuples, written by Python 2
# or by Python 3 at protocols 2-5), plus harmless stack and memo bookkeeping.
# Refused: object construction other than REDUCE of an allowed global (INST, OBJ,
# NEWOBJ, NEWOBJ_EX), persistent ids, the extension registry and out-of-band buffers.
ALLOWED_OPCODES = frozenset("""
    PROTO FRAME STOP MARK POP POP_MARK DUP
    NONE NEWTRUE NEWFALSE INT BININT BININT1 BININT2 LONG LONG1 LONG4 FLOAT BINFLOAT
    STRING BINSTRING SHORT_BINSTRING BINBYTES SHORT_BINBYTES BINBYTES8
    UNICODE BINUNICODE SHORT_BINUNICODE BINUNICODE8
    EMPTY_TUPLE TUPLE TUPLE1 TUPLE2 TUPLE3 EMPTY_LIST APPEND APPENDS LIST
    EMPTY_DICT DICT SETITEM SETITEMS
    GLOBAL STACK_GLOBAL REDUCE BUILD
    PUT BINPUT LONG_BINPUT MEMOIZE GET BINGET LONG_BINGET
""".split())


def check_opcodes(data: bytes) -> None:
    """Refuse a pickle whose opcodes could do more than rebuild the book's arrays.

    Reads the opcode stream with :func:`pickletools.genops` (nothing is run):
    only :data:`ALLOWED_OPCODES` are accepted, and a memo index (``PUT n``) may
    not exceed the number of opcodes before it, which every pickler respects
    and which bounds the unpickler's memo table by the file's size.

    Raises
    ------
    UnsafePickleError
        A refused opcode or memo index.
    pickle.UnpicklingError, ValueError
        Not a well-formed pickle.
    """
    # The whole stream is read before judging, so a damaged file is reported as
    # damaged rather than as unsafe.
    refusal = None
    for count, (opcode, arg, position) in enumerate(pickletools.genops(io.BytesIO(data))):
        if refusal is not None:
            continue
        if opcode.name not in ALLOWED_OPCODES:
            refusal = (f"refusing opcode {opcode.name} at byte {position}: the book's pickle holds only numpy "
                       f"arrays in tuples")
        elif opcode.name in ("PUT", "BINPUT", "LONG_BINPUT", "GET", "BINGET", "LONG_BINGET"):
            if not isinstance(arg, int) or not 0 <= arg <= count:
                refusal = (f"refusing memo index {arg!r} at byte {position} (opcode {count}): no pickler writes "
                           f"an index beyond the number of opcodes before it")
    if refusal is not None:
        raise UnsafePickleError(refusal)


def restricted_loads(data: bytes):
    """Unpickle ``data`` with :class:`RestrictedUnpickler`, Python 2 strings read as latin-1.

    The opcodes are checked first (:func:`check_opcodes`).
    """
    check_opcodes(data)
    return RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()


def read_book_pickle(path, dtype="float32"):
    """The book's ``mnist.pkl.gz``: training, validation and test sets.

    Parameters
    ----------
    path : str or os.PathLike
        ``mnist.pkl.gz`` (from https://github.com/mnielsen/neural-networks-and-deep-learning,
        ``data/``), or the same pickle uncompressed.
    dtype : {"float32", "float64"}
        The file stores float32; asking for float32 returns the unpickled arrays
        without a copy.

    Returns
    -------
    ((X_train, y_train), (X_val, y_val), (X_test, y_test))
        ``X_*`` ``(n, 784)`` of ``dtype`` in [0, 1]; ``y_*`` ``(n,)`` int64.
        50,000 / 10,000 / 10,000 rows in the book's file.

    Raises
    ------
    UnsafePickleError (a ValueError and a pickle.UnpicklingError)
        The pickle refers to anything but numpy array reconstruction.
    DataFormatError (a ValueError)
        Not a pickle, damaged, or not three ``(images, labels)`` pairs.

    Warnings
    --------
    Pickle files can run arbitrary code when loaded with ``pickle.load``. This
    reader never does: it uses :class:`RestrictedUnpickler`, which resolves only
    ``numpy.core.multiarray._reconstruct`` (and numpy 2's ``numpy._core`` name),
    ``numpy.ndarray``, ``numpy.dtype`` and a latin-1-only ``_codecs.encode``, and
    refuses any other global before calling it, after :func:`check_opcodes` has
    refused every opcode the book's file does not need and any memo index that
    would make the unpickler allocate more than the file holds. What remains is
    a file's honest size: memory stays within a small multiple of it. Prefer
    the IDX files or an ``.npz`` when you have the choice.
    """
    path = as_path(path)
    dt = check_dtype(dtype)
    raw = gunzip(path) if is_gzip(path) else path.read_bytes()
    try:
        sets = restricted_loads(raw)
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"{path}: {exc}") from None
    except Exception as exc:  # a damaged pickle can fail in many ways; all mean the same
        raise DataFormatError(f"{path}: not a readable pickle ({type(exc).__name__}: {exc})") from None
    del raw

    if not (isinstance(sets, tuple) and len(sets) == 3):
        raise DataFormatError(
            f"{path}: expected a tuple of 3 (images, labels) pairs (train, validation, test), "
            f"got {type(sets).__name__}{f' of length {len(sets)}' if isinstance(sets, (tuple, list)) else ''}"
        )
    result = []
    for split, pair in zip(SPLITS, sets):
        where = f"{path}: {split} set"
        if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(a, np.ndarray) for a in pair)):
            raise DataFormatError(f"{where}: expected a pair of numpy arrays (images, labels)")
        images, labels = pair
        if images.ndim != 2 or images.dtype.kind != "f":
            raise DataFormatError(
                f"{where}: images must be a 2-D float array (n, 784), got shape {images.shape} "
                f"of {images.dtype}"
            )
        y = integer_labels(labels, f"{where} labels")
        if y.shape[0] != images.shape[0]:
            raise DataFormatError(f"{where}: {images.shape[0]:,} images but {y.shape[0]:,} labels")
        result.append((unit_interval_floats(images, dt, f"{where} images"), y))
    return tuple(result)
