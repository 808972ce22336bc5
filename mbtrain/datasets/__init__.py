"""Data sets for mbtrain: named loaders, readers for the usual file formats, validation splits.

Shape legend: ``n`` examples, ``f`` features per example (784 for 28x28 images,
64 for the 8x8 digits). Every reader returns ``X`` ``(n, f)`` in ``float32``
(default) or ``float64``, scaled to [0, 1], and ``y`` ``(n,)`` int64::

    X_train, y_train, X_test, y_test = mbtrain.datasets.load("fashion-mnist")
    X_train, y_train, X_val, y_val = mbtrain.datasets.book_split(X_train, y_train)

Modules, one concern each:

- :mod:`~mbtrain.datasets.catalog`: named data sets (``load``), search path, cache;
- :mod:`~mbtrain.datasets.idx`: the IDX format of MNIST, Fashion-MNIST, KMNIST;
- :mod:`~mbtrain.datasets.book_pickle`: the book's ``mnist.pkl.gz``, unpickled safely;
- :mod:`~mbtrain.datasets.npz`: ``.npz`` archives (``x_train, y_train, x_test, y_test``);
- :mod:`~mbtrain.datasets.csvfile`: CSV with a label column;
- :mod:`~mbtrain.datasets.userfile`: a file in any of these formats, recognised by its content;
- :mod:`~mbtrain.datasets.remote`: verified, atomic downloads from mirrors (pooch, an optional extra);
- :mod:`~mbtrain.datasets.splits`: validation and test splits (seeded; stratified by class or not).

Every error about a file is a :class:`DataFormatError` (a ``ValueError``)
whose message starts with the file's path.
"""
from ._io import DataFormatError
from .book_pickle import RestrictedUnpickler, UnsafePickleError, read_book_pickle
from .catalog import COMMAND_DATASETS, DATASETS, cache_dir, load, locate, search_dirs
from .csvfile import read_csv
from .idx import read_idx, read_idx_images, read_idx_labels, read_idx_pair
from .npz import read_npz
from .remote import DownloadError, download, download_file
from .splits import book_split, stratified_split, train_validation_split
from .userfile import DataFile, detect_format, read_data_file

__all__ = [
    "COMMAND_DATASETS", "DATASETS", "DataFile", "DataFormatError", "DownloadError", "RestrictedUnpickler",
    "UnsafePickleError",
    "book_split", "cache_dir", "detect_format", "download", "download_file", "load", "locate", "read_book_pickle",
    "read_csv", "read_data_file", "read_idx", "read_idx_images", "read_idx_labels", "read_idx_pair", "read_npz",
    "search_dirs", "stratified_split", "train_validation_split",
]
