"""The book's ``mnist.pkl.gz``, read safely under Python 3.

The file is a Python 2 pickle of three ``(images, labels)`` pairs::

    ((train_x, train_y), (val_x, val_y), (test_x, test_y))
    train_x (50000, 784) float32 in [0, 1], train_y (50000,) int64, 10,000 rows each for val and test

Two things go wrong with a plain ``pickle.load``. Under Python 3 it fails with
``UnicodeDecodeError: 'ascii' codec can't decode byte ...``, because Python 2
``str`` objects (numpy's raw array bytes among them) are decoded as ASCII;
``encoding="latin1"`` maps each byte to one character, which are turned back
into the same bytes. And a pickle is a program: loading one from an untrusted
source can run any code, and even numpy's own constructors, called with
hostile arguments, read outside memory (``ndarray(shape, dtype, buffer,
offset)`` accepts a negative offset) or allocate without bound.

So nothing numpy offers is handed to the pickle. Each array in the book's file
is written as ``_reconstruct(ndarray, (0,), b"b")`` followed by ``BUILD`` with
``(1, shape, dtype, is_fortran, raw_bytes)``, and each item type as
``dtype(code, align, copy)`` followed by ``BUILD`` with its byte order. The
pickle gets placeholders for exactly those calls (:class:`RestrictedUnpickler`);
a placeholder's ``BUILD`` checks what it is given and only then builds the
array itself, from bytes already in the file, so an array can never be larger
than the bytes present. ``numpy.ndarray`` is only a marker for ``_reconstruct``
and cannot be called.

Memory is bounded before anything runs: :func:`check_opcodes` reads the opcode
stream first, refusing opcodes the book's file never uses and memo indices no
honest writer produces (CPython sizes its memo table by the largest index a
``PUT`` names), and the file is decompressed into memory only up to a cap.

Reading a pickle is always the caller's explicit choice: :func:`mbtrain.datasets.load`
never opens one; only :func:`read_book_pickle`, given a path, does.
"""
from __future__ import annotations

import math
import pickle
import pickletools
import reprlib
import struct

import numpy as np

from .._validation import check_dtype
from ._convert import integer_labels, unit_interval_floats
from ._io import BufferReader, DataFormatError, RecordingReader, as_path, count_up_to, open_stream

SPLITS = ("train", "validation", "test")
MAX_BYTES = 2**30  # default cap on the decompressed pickle; the book's unpickles from 220 MB
# Item types an array may have: the book's float32 and int64 and their plain
# numeric relatives. Never objects (they need more pickle), strings, or
# structured types (whose layout would come from the file).
ARRAY_TYPES = frozenset("b1 i1 i2 i4 i8 u1 u2 u4 u8 f2 f4 f8".split())
MAX_NDIM = 32  # numpy 1.x's limit (numpy 2: 64)


class UnsafePickleError(pickle.UnpicklingError, ValueError):
    """A pickle asked for anything but rebuilding plain numpy arrays the way numpy writes them."""


_brief = reprlib.repr  # for messages: a hostile argument can be a gigabyte string


# -- what a pickle is given instead of numpy -----------------------------------

class _Refusing:
    """Base of everything a pickle can reach: ``BUILD`` on it is refused, and it has no attributes to set."""

    __slots__ = ()

    def __setstate__(self, state):
        raise UnsafePickleError(f"refusing BUILD on {self!r}: only arrays and item types are given a state")


class _Global(_Refusing):
    """An allowed global, as the pickle sees it: calls ``function``."""

    __slots__ = ("name", "function")

    def __init__(self, name, function):
        self.name, self.function = name, function

    def __call__(self, *args):
        return self.function(*args)

    def __repr__(self):
        return self.name


class _NdarrayMarker(_Refusing):
    """``numpy.ndarray`` as the pickle sees it: the first argument of ``_reconstruct``, never a constructor."""

    __slots__ = ()

    def __call__(self, *args):
        raise UnsafePickleError(
            f"refusing to call numpy.ndarray{_brief(args)}: an array is only rebuilt from its own bytes "
            "(_reconstruct, then BUILD), never over a buffer, an offset or strides the file chooses")

    def __repr__(self):
        return "numpy.ndarray"


NDARRAY = _NdarrayMarker()


class _ItemType(_Refusing):
    """``numpy.dtype(code, ...)`` waiting for its BUILD (the byte order); ``dtype`` once built."""

    __slots__ = ("code", "dtype")

    def __init__(self, code: str):
        self.code, self.dtype = code, None

    def __setstate__(self, state):
        # numpy writes (3, byte_order, subarray, names, fields, elsize, alignment, flags),
        # version 4 with metadata last; all but the byte order are None or
        # integers that carry nothing for a plain numeric type.
        if self.dtype is not None:
            raise UnsafePickleError(f"refusing a second BUILD of numpy.dtype({self.code!r})")
        if not (isinstance(state, tuple) and len(state) in (8, 9) and state[0] == len(state) - 5
                and state[1] in ("<", ">", "|", "=") and state[2:5] == (None, None, None)
                and all(type(v) is int for v in state[5:8]) and state[8:] in ((), (None,))):
            raise UnsafePickleError(f"refusing numpy.dtype({self.code!r}) state {_brief(state)}: "
                                    "a plain numeric type has only a byte order")
        self.dtype = np.dtype(self.code).newbyteorder(state[1])

    def __repr__(self):
        return f"numpy.dtype({self.code!r})"


class _Array(_Refusing):
    """An array the pickle asked ``_reconstruct`` for, until its BUILD brings (and we check) its bytes."""

    __slots__ = ("array",)

    def __init__(self, array=None):
        self.array = array

    def __setstate__(self, state):
        if self.array is not None:
            raise UnsafePickleError("refusing a second BUILD of an array")
        if not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1
                and type(state[3]) in (bool, int) and state[3] in (0, 1)):
            raise UnsafePickleError(f"refusing array state {_brief(state)}: numpy writes "
                                    "(1, shape, dtype, is_fortran, bytes)")
        _, shape, item_type, fortran, raw = state
        self.array = _array_from_bytes(raw, item_type, shape, "F" if fortran else "C")

    def __repr__(self):
        return "numpy array" if self.array is not None else "numpy array (never given its data)"


def _array_from_bytes(raw, item_type, shape, order: str) -> np.ndarray:
    """A new array of ``shape`` over a copy of ``raw``, once ``raw`` holds exactly the bytes ``shape`` needs."""
    if not (isinstance(item_type, _ItemType) and item_type.dtype is not None):
        raise UnsafePickleError(f"refusing an array of item type {_brief(item_type)}: it must be a "
                                "numpy.dtype built earlier in the file")
    if not (isinstance(shape, tuple) and len(shape) <= MAX_NDIM and all(type(d) is int and d >= 0 for d in shape)):
        raise UnsafePickleError(f"refusing array shape {_brief(shape)}: at most {MAX_NDIM} sizes >= 0")
    if not isinstance(raw, (bytes, bytearray, str)):
        raise UnsafePickleError(f"refusing array data of type {type(raw).__name__}: it must be bytes")
    dtype = item_type.dtype
    declared = math.prod(shape) * dtype.itemsize  # Python ints: no overflow
    if len(raw) != declared:  # a latin-1 str holds one byte per character
        raise UnsafePickleError(f"refusing an array that declares shape {shape} of {dtype}, i.e. {declared:,} "
                                f"bytes, from {len(raw):,} bytes")
    if declared == 0:
        return np.empty(shape, dtype=dtype, order=order)
    buffer = bytearray(raw, "latin1") if isinstance(raw, str) else bytearray(raw)  # writable, owned
    return np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order)


def _reconstruct(subtype, shape, placeholder_type):
    # numpy always writes _reconstruct(ndarray, (0,), b"b"): an empty array whose
    # real shape, type and bytes come with BUILD.
    if subtype is not NDARRAY or shape != (0,) or placeholder_type not in (b"b", "b"):
        raise UnsafePickleError(f"refusing _reconstruct{_brief((subtype, shape, placeholder_type))}: numpy "
                                "writes _reconstruct(numpy.ndarray, (0,), b'b')")
    return _Array()


def _frombuffer(buffer, item_type, shape, order):
    # Protocol 5: numpy writes _frombuffer(bytes, dtype, shape, order), no BUILD.
    if order not in ("C", "F"):
        raise UnsafePickleError(f"refusing _frombuffer with order {_brief(order)}")
    return _Array(_array_from_bytes(buffer, item_type, shape, order))


def _item_type(code, align=False, copy=True):
    if not (isinstance(code, str) and code in ARRAY_TYPES and align in (0, 1) and copy in (0, 1)):
        raise UnsafePickleError(f"refusing numpy.dtype{_brief((code, align, copy))}: only the plain numeric "
                                f"types {' '.join(sorted(ARRAY_TYPES))} are rebuilt")
    return _ItemType(code)


def _latin1_encode(text, encoding="utf-8"):
    # Python 3 writes bytes at protocol 2 as _codecs.encode(text, "latin1");
    # any other codec is refused (codecs can do far more than encode text).
    if not isinstance(text, str) or not isinstance(encoding, str) or encoding.replace("-", "").lower() != "latin1":
        raise UnsafePickleError(f"refusing _codecs.encode with encoding {_brief(encoding)}; only 'latin1' is allowed")
    return text.encode("latin1")


def _empty_bytes(*args):
    # Python 3 writes an empty bytes at protocol 2 as bytes() (the data of an empty array).
    if args:
        raise UnsafePickleError(f"refusing bytes{_brief(args)}: only bytes() is allowed")
    return b""


def _arrays(obj, depth: int = 0, done: dict | None = None):
    """``obj`` with every array placeholder in its tuples, lists and dicts replaced by the array.

    Each container is rebuilt once (``done``, by id), however often the memo
    shares it, so the work is bounded by the file's size.
    """
    if isinstance(obj, _Array):
        if obj.array is None:
            raise UnsafePickleError("refusing an array that was never given its data (_reconstruct without BUILD)")
        return obj.array
    if not isinstance(obj, (tuple, list, dict)):
        return obj
    done = {} if done is None else done
    if id(obj) not in done:
        if depth >= 8:  # the book's file nests 2 deep; this also ends a list that holds itself
            raise UnsafePickleError("refusing containers nested more than 8 deep")
        if isinstance(obj, dict):
            done[id(obj)] = {key: _arrays(value, depth + 1, done) for key, value in obj.items()}
        else:
            done[id(obj)] = type(obj)(_arrays(item, depth + 1, done) for item in obj)
    return done[id(obj)]


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds plain numpy arrays, tuples, lists and scalars, and nothing else.

    ``find_class`` is the only door through which a pickle reaches code; this
    one hands out the placeholders in ``ALLOWED`` and raises
    :class:`UnsafePickleError` for every other global (``os.system``,
    ``builtins.eval``, ``subprocess.Popen`` ...), before anything is called.
    :meth:`load` returns real arrays in place of the placeholders.
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _Global("_reconstruct", _reconstruct),  # numpy 1.x, Python 2
        ("numpy._core.multiarray", "_reconstruct"): _Global("_reconstruct", _reconstruct),  # numpy 2
        ("numpy.core.numeric", "_frombuffer"): _Global("_frombuffer", _frombuffer),  # protocol 5, numpy 1.x
        ("numpy._core.numeric", "_frombuffer"): _Global("_frombuffer", _frombuffer),  # protocol 5, numpy 2
        ("numpy", "ndarray"): NDARRAY,
        ("numpy", "dtype"): _Global("numpy.dtype", _item_type),
        ("_codecs", "encode"): _Global("_codecs.encode", _latin1_encode),
        ("__builtin__", "bytes"): _Global("bytes", _empty_bytes),  # how protocol 2 spells b""
        ("builtins", "bytes"): _Global("bytes", _empty_bytes),
    }

    def find_class(self, module, name):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to load global {module}.{name}: this reader only rebuilds numpy arrays "
                f"(a pickle can run arbitrary code; see mbtrain.datasets.read_book_pickle)"
            ) from None

    def load(self):
        return _arrays(super().load())


# Opcodes that build the book's file (numpy arrays in tuples, written by Python 2
# or by Python 3 at protocols 2-5), plus harmless stack and memo bookkeeping.
# Refused: object construction other than REDUCE of an allowed global (INST, OBJ,
# NEWOBJ, NEWOBJ_EX), persistent ids, the extension registry and out-of-band buffers.
ALLOWED_OPCODES = frozenset("""
    PROTO FRAME STOP MARK POP POP_MARK DUP
    NONE NEWTRUE NEWFALSE INT BININT BININT1 BININT2 LONG LONG1 LONG4 FLOAT BINFLOAT
    STRING BINSTRING SHORT_BINSTRING BINBYTES SHORT_BINBYTES BINBYTES8 BYTEARRAY8
    UNICODE BINUNICODE SHORT_BINUNICODE BINUNICODE8
    EMPTY_TUPLE TUPLE TUPLE1 TUPLE2 TUPLE3 EMPTY_LIST APPEND APPENDS LIST
    EMPTY_DICT DICT SETITEM SETITEMS
    GLOBAL STACK_GLOBAL REDUCE BUILD
    PUT BINPUT LONG_BINPUT MEMOIZE GET BINGET LONG_BINGET
""".split())
_MEMO_INDEX_OPCODES = frozenset("PUT BINPUT LONG_BINPUT GET BINGET LONG_BINGET".split())
_LENGTH_PREFIXES = {pickletools.TAKEN_FROM_ARGUMENT1: "<B", pickletools.TAKEN_FROM_ARGUMENT4: "<i",
                    pickletools.TAKEN_FROM_ARGUMENT4U: "<I", pickletools.TAKEN_FROM_ARGUMENT8U: "<Q"}


def _exactly(reader: RecordingReader, size: int) -> bytes:
    data = reader.read(size)
    if len(data) < size:
        raise ValueError("the pickle ends before its STOP opcode")
    return data


def _argument(reader: RecordingReader, op) -> int | None:
    """Read (and keep) ``op``'s argument; returns it when it is a memo index, else ``None``."""
    arg = op.arg
    if arg is None:
        return None
    if arg.n in _LENGTH_PREFIXES:  # a counted string: its length is read, its bytes only kept
        fmt = _LENGTH_PREFIXES[arg.n]
        length = struct.unpack(fmt, _exactly(reader, struct.calcsize(fmt)))[0]
        if length < 0:
            raise ValueError(f"{op.name} with a negative length")
        if reader.skip(length) < length:
            raise ValueError("the pickle ends before its STOP opcode")
        return None
    if arg.n == pickletools.UP_TO_NEWLINE:
        for _ in range(2 if arg.name == "stringnl_noescape_pair" else 1):
            limit = 32 if op.name in _MEMO_INDEX_OPCODES else reader.max_bytes - len(reader.data) + 1
            line = reader.readline(limit)
            if not line.endswith(b"\n"):
                raise ValueError(f"{op.name} without its newline")
        return int(line) if op.name in _MEMO_INDEX_OPCODES else None
    data = _exactly(reader, arg.n)
    return int.from_bytes(data, "little") if op.name in _MEMO_INDEX_OPCODES else None


def check_opcodes(reader: RecordingReader) -> None:
    """Read a pickle's opcodes up to its STOP, running none, and refuse any that could do more than rebuild arrays.

    Only :data:`ALLOWED_OPCODES` are accepted, and a memo index (``PUT n``) may
    not exceed the number of opcodes before it, which every pickler respects
    and which bounds the unpickler's memo table by the file's size. The
    stream's bytes are kept in ``reader.data`` (``reader`` refuses beyond its
    ``max_bytes``); a counted string's length is known before its bytes are read.

    Raises
    ------
    UnsafePickleError
        A refused opcode or memo index, in an otherwise well-formed pickle.
    DataFormatError
        The stream holds more than ``reader.max_bytes`` or is a damaged gzip file.
    ValueError
        Not a well-formed pickle (checked before judging, so that a damaged file
        is reported as damaged rather than as unsafe).
    """
    refusal, count = None, 0
    while True:
        position = len(reader.data)
        code = _exactly(reader, 1)
        op = pickletools.code2op.get(code.decode("latin-1"))
        if op is None:
            raise ValueError(f"unknown opcode {code!r} at byte {position}")
        index = _argument(reader, op)
        if refusal is None and op.name not in ALLOWED_OPCODES:
            refusal = (f"refusing opcode {op.name} at byte {position}: the book's pickle holds only numpy "
                       f"arrays in tuples")
        elif refusal is None and index is not None and not 0 <= index <= count:
            refusal = (f"refusing memo index {index!r} at byte {position} (opcode {count}): no pickler writes "
                       f"an index beyond the number of opcodes before it")
        count += 1
        if op.name == "STOP":
            break
    if refusal is not None:
        raise UnsafePickleError(refusal)


def _load(path, max_bytes: int):
    with open_stream(path) as stream:
        reader = RecordingReader(stream, path, max_bytes)
        check_opcodes(reader)
        # Reading on to the end makes gzip check its CRC; nothing may follow STOP.
        extra = count_up_to(stream, 2**20, path)
    if extra:
        raise DataFormatError(f"{path}: {'more than 1,048,576' if extra > 2**20 else f'{extra:,}'} unexpected "
                              f"bytes after the pickle's STOP opcode (byte {len(reader.data):,})")
    return RestrictedUnpickler(BufferReader(reader.data), encoding="latin1").load()


def read_book_pickle(path, dtype="float32", max_bytes=MAX_BYTES):
    """The book's ``mnist.pkl.gz``: training, validation and test sets.

    Parameters
    ----------
    path : str or os.PathLike
        ``mnist.pkl.gz`` (from https://github.com/mnielsen/neural-networks-and-deep-learning,
        ``data/``), or the same pickle uncompressed.
    dtype : {"float32", "float64"}
        The file stores float32; asking for float32 returns the unpickled arrays
        without a further copy.
    max_bytes : int
        The most the pickle may hold once decompressed (default 1 GiB; the
        book's holds 220 MB). A larger file is refused as soon as it is seen to
        exceed this, before it is unpickled.

    Returns
    -------
    ((X_train, y_train), (X_val, y_val), (X_test, y_test))
        ``X_*`` ``(n, 784)`` of ``dtype`` in [0, 1]; ``y_*`` ``(n,)`` int64.
        50,000 / 10,000 / 10,000 rows in the book's file.

    Raises
    ------
    UnsafePickleError (a ValueError and a pickle.UnpicklingError)
        The pickle asks for anything but plain numeric numpy arrays rebuilt the
        way numpy writes them, or declares an array larger than its bytes.
    DataFormatError (a ValueError)
        Not a pickle, damaged, larger than ``max_bytes``, or not three
        ``(images, labels)`` pairs.

    Warnings
    --------
    Pickle files can run arbitrary code when loaded with ``pickle.load``. This
    reader never does (see the module's notes): no global but numpy's array
    reconstruction is resolved, and that only as placeholders that check shape,
    item type and byte count and build each array from the file's own bytes.
    Memory peaks near four times the decompressed pickle (three to four for
    the book's), which may not exceed ``max_bytes``. Prefer the IDX files or
    an ``.npz`` when you have the choice.
    """
    path = as_path(path)
    dt = check_dtype(dtype)
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise ValueError(f"max_bytes: must be a positive integer, got {max_bytes!r}")
    try:
        sets = _load(path, max_bytes)
    except DataFormatError:
        raise
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"{path}: {exc}") from None
    except Exception as exc:  # a damaged pickle can fail in many ways; all mean the same
        raise DataFormatError(f"{path}: not a readable pickle ({type(exc).__name__}: {exc})") from None

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
