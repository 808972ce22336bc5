"""Named data sets: where their files are looked for, where they are fetched from, how they load.

Shapes: ``X`` is ``(n_samples, n_features)`` (rows are examples; a 28x28 image
is one row of 784), ``y`` is ``(n_samples,)`` int64.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from .._validation import check_dtype
from . import remote
from ._convert import scale_to_unit
from ._io import as_path
from .idx import read_idx_pair
from .remote import DownloadError

IDX_FILES = {  # role -> standard file name (then with or without .gz)
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


@dataclass(frozen=True)
class IdxDataset:
    """An IDX data set: the four standard files, their mirrors and checksums.

    ``md5`` holds the published MD5 of each ``.gz`` file as the mirrors serve
    it. It is checked on download only: repackaged copies (Debian's
    ``dataset-fashion-mnist`` recompressed the files, so their ``.gz`` MD5s
    differ although the decompressed content is identical) are validated by
    their IDX headers instead.
    """

    name: str
    title: str
    mirrors: tuple[str, ...]
    md5: dict[str, str]
    system_dirs: tuple[str, ...] = ()
    raw_md5: dict[str, str] = field(default_factory=dict)  # of the decompressed files, for reference


FASHION_MNIST = IdxDataset(
    name="fashion-mnist",
    title="Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017; Zalando Research, MIT licence)",
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    md5={
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    system_dirs=("/usr/share/datasets/fashion-mnist",),  # Debian/Ubuntu: apt install dataset-fashion-mnist
    raw_md5={
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
)

MNIST = IdxDataset(
    name="mnist",
    title="MNIST (LeCun, Cortes and Burges)",
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    md5={
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
)

IDX_DATASETS = {spec.name: spec for spec in (MNIST, FASHION_MNIST)}
DATASETS = ("digits", "fashion-mnist", "mnist")
#: Every ``--dataset`` a command accepts: the named sets, and seeded ``"synthetic"`` blobs
#: (:func:`mbtrain.synthetic.make_blobs`, made rather than loaded). The one list the CLI's choices come from.
COMMAND_DATASETS = (*DATASETS, "synthetic")
_ALIASES = {"fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist"}


def canonical_name(name) -> str:
    """``name`` as listed in :data:`DATASETS` (case-insensitive; ``fashion_mnist`` accepted)."""
    if not isinstance(name, str):
        raise TypeError(f"name: expected a data set name such as 'digits', got {type(name).__name__}")
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in DATASETS:
        raise ValueError(f"name: unknown data set {name!r}; known: {', '.join(DATASETS)}")
    return key


def cache_dir(name: str | None = None) -> Path:
    """Where downloads go: ``$XDG_CACHE_HOME/mbtrain[/name]``, else ``~/.cache/mbtrain[/name]``."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says to ignore a relative value.
    root = Path(base) if os.path.isabs(base) else Path.home() / ".cache"
    root = root / "mbtrain"
    return root / canonical_name(name) if name is not None else root


def search_dirs(name: str, data_dir=None) -> list[Path]:
    """The directories :func:`load` looks in for an IDX data set, in order.

    ``data_dir``; ``$MBTRAIN_DATA/<name>``; ``$MBTRAIN_DATA``; the cache
    directory; then system locations (Debian's ``/usr/share/datasets/<name>``).

    IDX files do not say which data set they hold, so files directly in
    ``$MBTRAIN_DATA`` serve every name: keep one data set there, or use one
    subdirectory per data set.
    """
    spec = IDX_DATASETS[canonical_name(name)]
    dirs = []
    if data_dir is not None:
        dirs.append(as_path(data_dir, "data_dir"))
    env = os.environ.get("MBTRAIN_DATA")
    if env:
        dirs += [Path(env) / spec.name, Path(env)]
    dirs.append(cache_dir(spec.name))
    dirs += [Path(d) for d in spec.system_dirs]
    return dirs


def files_in(directory: Path) -> dict[str, Path]:
    """role -> file for the standard IDX names present in ``directory`` (plain preferred to .gz)."""
    found = {}
    for role, stem in IDX_FILES.items():
        for candidate in (directory / stem, directory / f"{stem}.gz"):
            if candidate.is_file():
                found[role] = candidate
                break
    return found


def locate(name: str, data_dir=None) -> dict[str, Path] | None:
    """The four IDX files of data set ``name`` from the first search directory holding them all.

    Returns ``None`` when no directory holds any of them. A directory holding
    some but not all is an error (outside the cache, which downloads fill in
    file by file), so a misplaced file is reported rather than bypassed.
    """
    cache = cache_dir(name)
    for directory in search_dirs(name, data_dir):
        found = files_in(directory)
        if len(found) == len(IDX_FILES):
            return found
        if found and directory != cache:
            missing = [IDX_FILES[r] for r in IDX_FILES if r not in found]
            raise FileNotFoundError(
                f"{directory}: holds {', '.join(p.name for p in found.values())} but not "
                f"{', '.join(missing)} (with or without .gz)"
            )
    return None


def fetch(name: str, progress: bool | None = None, timeout: float = 60.0) -> dict[str, Path]:
    """Download the IDX files of ``name`` missing from its cache directory; return all four."""
    spec = IDX_DATASETS[canonical_name(name)]
    target = cache_dir(spec.name)
    present = files_in(target)
    wanted = {f"{IDX_FILES[role]}.gz": spec.md5[f"{IDX_FILES[role]}.gz"] for role in IDX_FILES if role not in present}
    remote.download(wanted, spec.mirrors, target, progress=progress, timeout=timeout)
    return files_in(target)


def _load_digits(dtype):
    with resources.files("mbtrain").joinpath("data", "digits.npz").open("rb") as f:
        with np.load(f, allow_pickle=False) as archive:
            images, labels, test_index = archive["images"], archive["labels"], archive["test_index"]
    is_test = np.zeros(labels.shape[0], dtype=bool)
    is_test[test_index] = True
    X = scale_to_unit(images, 16, dtype)  # pixels are counts 0..16 of a 4x4 block
    y = labels.astype(np.int64)
    return X[~is_test], y[~is_test], X[is_test], y[is_test]


def load(name: str, dtype="float32", data_dir=None, *, download: bool = True,
         progress: bool | None = None):
    """A named data set as ``(X_train, y_train, X_test, y_test)``.

    Parameters
    ----------
    name : {"digits", "fashion-mnist", "mnist"}
        Case-insensitive; ``"fashion_mnist"`` also works.

        ``"digits"``: the 8x8 UCI handwritten digits, 1,797 images of 64 pixels,
        shipped with mbtrain (always works offline). The split is fixed and
        stratified: 30 images of each digit (300) form the test set, the other
        1,497 the training set; see ``mbtrain/data/README.md``. Pixels are
        counts 0..16, divided by 16. Source: E. Alpaydin and C. Kaynak (1998),
        "Optical Recognition of Handwritten Digits", UCI Machine Learning
        Repository, CC BY 4.0; copied from scikit-learn (BSD-3-Clause).

        ``"fashion-mnist"``, ``"mnist"``: 60,000 training and 10,000 test
        images of 28x28 = 784 pixels, divided by 255. The four standard IDX
        files (``train-images-idx3-ubyte`` ..., each plain or ``.gz``) are
        looked for in: ``data_dir``; ``$MBTRAIN_DATA/<name>/``;
        ``$MBTRAIN_DATA``; the cache ``$XDG_CACHE_HOME/mbtrain/<name>``
        (default ``~/.cache/mbtrain/<name>``); for Fashion-MNIST,
        ``/usr/share/datasets/fashion-mnist`` (Debian's
        ``dataset-fashion-mnist``). If none holds them, they are downloaded into
        the cache from the canonical mirrors and checked against the published
        MD5s.
    dtype : {"float32", "float64"}
    data_dir : str or os.PathLike, optional
        Searched first (IDX data sets; ``"digits"`` always loads the shipped copy).
    download : bool
        Allow downloading when no local copy is found.
    progress : bool or None
        Download progress bar; ``None``: only when stderr is a terminal.

    Returns
    -------
    X_train : ndarray, ``(n_train, n_features)``, ``dtype``, in [0, 1]
    y_train : ndarray, ``(n_train,)``, int64
    X_test : ndarray, ``(n_test, n_features)``, ``dtype``, in [0, 1]
    y_test : ndarray, ``(n_test,)``, int64

    Raises
    ------
    ValueError
        Unknown ``name`` (the message lists the known ones) or ``dtype``.
    DataFormatError (a ValueError)
        A file found on the search path is damaged or not in IDX format; the
        message names it. Nothing falls back silently to another copy.
    FileNotFoundError
        A search directory holds only some of the four files; or nothing was
        found and ``download=False``.
    DownloadError (an OSError)
        Nothing found locally and no mirror delivered the files; the message
        lists the directories searched and every URL tried.

    Examples
    --------
    >>> X_train, y_train, X_test, y_test = load("digits")
    >>> X_train.shape, X_test.shape
    ((1497, 64), (300, 64))
    """
    key = canonical_name(name)
    dt = check_dtype(dtype)
    if key == "digits":
        return _load_digits(dt)
    files = locate(key, data_dir)
    if files is None:
        searched = "\n  ".join(str(d) for d in search_dirs(key, data_dir))
        if not download:
            raise FileNotFoundError(
                f"{key}: the IDX files ({', '.join(IDX_FILES.values())}, with or without .gz) "
                f"are in none of:\n  {searched}\nand download=False"
            )
        try:
            files = fetch(key, progress=progress)
        except DownloadError as exc:
            raise DownloadError(f"{key}: no local copy in any of:\n  {searched}\nand {exc}") from None
    X_train, y_train = read_idx_pair(files["train_images"], files["train_labels"], dt)
    X_test, y_test = read_idx_pair(files["test_images"], files["test_labels"], dt)
    return X_train, y_train, X_test, y_test
