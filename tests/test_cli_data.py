"""The user's own data on every data-taking command: --data, --label-column, --max-value, --test-data.

Files are written by the tests: a CSV sorted by label (as files often are),
.npz archives, an IDX pair and directory, the book's pickle layout.
"""
import argparse
import gzip
import json
import pickle

import numpy as np
import pytest

from mbtrain import datasets
from mbtrain.bench.data import load_file_data
from mbtrain.cli import build_parser, main
from mbtrain.commands._data import SPLIT_SEED, TEST_FRACTION, load_file

N_ROWS, N_FEATURES, N_CLASSES = 300, 6, 3


def labelled_rows(n=N_ROWS, seed=0):
    """Pixels 0..255 whose mean tells the class apart, sorted by label."""
    rng = np.random.default_rng(seed)
    y = np.sort(rng.integers(0, N_CLASSES, n))
    X = np.clip(rng.normal(40 + 80 * y[:, None], 20, (n, N_FEATURES)), 0, 255).astype(np.uint8)
    return X, y


def write_csv(path, X, y, label_last=True, header=True):
    lines = []
    if header:
        names = [f"pixel{i}" for i in range(X.shape[1])]
        lines.append(",".join(names + ["label"] if label_last else ["label"] + names))
    for row, label in zip(X, y):
        cells = [str(v) for v in row]
        lines.append(",".join(cells + [str(label)] if label_last else [str(label)] + cells))
    path.write_text("\n".join(lines) + "\n")
    return path


def idx_bytes(items):
    return bytes([0, 0, 8, items.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in items.shape) + items.tobytes()


@pytest.fixture
def csv_file(tmp_path):
    return write_csv(tmp_path / "mine.csv", *labelled_rows())


def one_line_error(capsys, command, *names):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"mbtrain {command}: error: "), err
    for name in names:
        assert name in err, err
    return err


# -- argparse: no option taken for another ---------------------------------------------------

def test_prefix_matching_is_off_on_every_parser():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert parser.allow_abbrev is False
    assert {name: p.allow_abbrev for name, p in subparsers.choices.items()} == dict.fromkeys(subparsers.choices,
                                                                                             False)


@pytest.mark.parametrize("argv", [["train", "--dat", "x.csv"], ["bench", "--data-d", "d"],
                                  ["sweep", "--datas", "digits"], ["evaluate", "m.npz", "--test-d", "t.csv"]])
def test_an_abbreviated_option_is_refused(capsys, argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert f"unrecognized arguments: {argv[-2]}" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "evaluate", "bench", "sweep"])
def test_every_data_command_documents_the_new_options(capsys, command):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for option in ("--data PATH", "--label-column N", "--max-value V", "--test-data PATH"):
        assert option in out
    assert "stratified by label, seed 0" in out


# -- the stratified split ----------------------------------------------------------------------

def test_stratified_split_holds_out_each_class_in_proportion_never_the_last_rows():
    y = np.repeat([0, 1, 2], [500, 300, 200])  # sorted by label: the last rows are all class 2
    held = datasets.stratified_split(y, 0.2, seed=0)
    assert held.sum() == 200
    assert np.bincount(y[held]).tolist() == [100, 60, 40]
    assert not held[-200:].all()
    # within each class a random choice, not its first or last rows
    for label in range(3):
        rows = np.flatnonzero(held & (y == label))
        size = (y == label).sum()
        assert rows.min() - np.flatnonzero(y == label).min() < size / 4
        assert np.flatnonzero(y == label).max() - rows.max() < size / 4
    np.testing.assert_array_equal(held, datasets.stratified_split(y, 0.2, seed=0))
    assert not np.array_equal(held, datasets.stratified_split(y, 0.2, seed=1))


def test_stratified_split_never_holds_out_a_whole_class():
    y = np.array([0] * 9 + [1])
    held = datasets.stratified_split(y, 0.5, seed=0)
    assert not held[-1] and held[:9].sum() == 5  # the lone class-1 row stays; a few rows fewer than asked is fine


@pytest.mark.parametrize("y, n_holdout, message", [
    (np.zeros((4, 2)), 0.5, "one class label per row"),
    (np.zeros(1), 0.5, "at least 2 rows"),
    (np.zeros(10), 10, r"n_validation: must be in \[1, 9\]"),
])
def test_stratified_split_arguments_are_checked(y, n_holdout, message):
    with pytest.raises(ValueError, match=message):
        datasets.stratified_split(y, n_holdout)


# -- formats, from the content -----------------------------------------------------------------

def test_every_format_is_recognised_by_its_content(tmp_path):
    X, y = labelled_rows()
    csv = write_csv(tmp_path / "no-suffix", X, y)
    gz_csv = tmp_path / "rows.dat"
    gz_csv.write_bytes(gzip.compress(csv.read_bytes()))
    npz = tmp_path / "arrays.bin"
    with open(npz, "wb") as f:
        np.savez(f, x_train=X, y_train=y)
    images = tmp_path / "train-images-idx3-ubyte"
    images.write_bytes(idx_bytes(X.reshape(-1, 2, 3)))
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(y.astype(np.uint8))))
    pkl = tmp_path / "mnist.pkl.gz"
    floats = X.astype(np.float32) / 255
    pkl.write_bytes(gzip.compress(pickle.dumps(((floats[:200], y[:200]), (floats[200:250], y[200:250]),
                                                (floats[250:], y[250:])), protocol=2)))
    found = {path.name: datasets.detect_format(path) for path in (csv, gz_csv, npz, images, pkl, tmp_path)}
    assert found == {"no-suffix": "csv", "rows.dat": "csv", "arrays.bin": "npz", "train-images-idx3-ubyte": "idx",
                     "mnist.pkl.gz": "book-pickle", tmp_path.name: "idx-dir"}
    for path in (csv, gz_csv, npz, images, tmp_path):
        part = datasets.read_data_file(path, label_column=-1 if path in (csv, gz_csv) else None)
        np.testing.assert_array_equal(part.y, y)
        np.testing.assert_allclose(part.X, X / 255, rtol=1e-6)
        assert part.X_test is None and part.validation is None
    book = datasets.read_data_file(pkl)
    assert (len(book.y), len(book.validation[1]), len(book.y_test)) == (200, 50, 50)


def test_an_idx_images_file_needs_its_labels_beside_it(tmp_path):
    X, _ = labelled_rows()
    images = tmp_path / "t10k-images-idx3-ubyte.gz"
    images.write_bytes(gzip.compress(idx_bytes(X.reshape(-1, 2, 3))))
    with pytest.raises(datasets.DataFormatError, match=r"without its labels file beside it "
                                                       r"\(t10k-labels-idx1-ubyte or t10k-labels-idx1-ubyte.gz\)"):
        datasets.read_data_file(images)


# -- train and evaluate --------------------------------------------------------------------------

def test_train_on_a_csv_sorted_by_label_tests_on_a_stratified_held_out_split(tmp_path, csv_file, capsys):
    out = tmp_path / "model.npz"
    assert main(["train", "--data", str(csv_file), "--label-column", "-1", "--epochs", "2", "--eta", "1",
                 "--quiet", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    n_test = round(TEST_FRACTION * N_ROWS)
    assert f"data: CSV {csv_file}, label column -1, features / 255" in text
    assert (f"test rows: {n_test} of the file's {N_ROWS} rows held out for testing (20%, stratified by label, "
            f"seed {SPLIT_SEED})") in text
    assert f"sizes {N_FEATURES},30,{N_CLASSES} (default for mine.csv" in text
    assert "validation rows, stratified by label, seed 0" in text
    assert f"on {n_test} test rows of mine.csv; model saved to {out}" in text
    assert out.is_file()
    # the held-out rows hold every class in proportion, though the file is sorted by label
    data = load_file(csv_file, label_column=-1)
    _, y = labelled_rows()
    np.testing.assert_array_equal(np.bincount(data.y_test, minlength=N_CLASSES),
                                  np.round(np.bincount(y) * TEST_FRACTION))


def test_evaluate_scores_the_rows_that_train_held_out(tmp_path, csv_file, capsys):
    out = tmp_path / "model.npz"
    assert main(["train", "--data", str(csv_file), "--label-column", "-1", "--epochs", "3", "--eta", "1",
                 "--seed", "5", "--quiet", "--out", str(out)]) == 0  # the training seed does not move the test rows
    trained = capsys.readouterr().out.splitlines()[-1]
    assert main(["evaluate", str(out), "--data", str(csv_file), "--label-column", "-1"]) == 0
    evaluated = capsys.readouterr().out
    accuracy = trained.split("test accuracy ")[1].split(",")[0]
    assert f"test accuracy {accuracy} on {round(TEST_FRACTION * N_ROWS)} test rows of mine.csv" in evaluated


def test_test_data_gives_the_test_rows_and_evaluate_takes_it_alone(tmp_path, capsys):
    X, y = labelled_rows()
    train_csv = write_csv(tmp_path / "train.csv", X[::2], y[::2], label_last=False, header=False)
    test_csv = write_csv(tmp_path / "test.csv", X[1::2], y[1::2], label_last=False, header=False)
    out = tmp_path / "m.npz"
    assert main(["train", "--data", str(train_csv), "--test-data", str(test_csv), "--epochs", "1", "--quiet",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"test rows: {N_ROWS // 2} rows from --test-data {test_csv}" in text
    assert f"on {N_ROWS // 2} test rows of train.csv" in text
    assert main(["evaluate", str(out), "--test-data", str(test_csv)]) == 0
    assert f"on {N_ROWS // 2} test rows of test.csv" in capsys.readouterr().out


def test_an_npz_with_its_own_test_part_is_tested_on_it(tmp_path, capsys):
    X, y = labelled_rows()
    path = tmp_path / "mine.npz"
    np.savez(path, x_train=X[:250], y_train=y[:250], x_test=X[250:], y_test=y[250:])
    assert main(["train", "--data", str(path), "--epochs", "1", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "test rows: 50 rows, the file's own test part" in text and "on 50 test rows of mine.npz" in text
    assert main(["train", "--data", str(path), "--test-data", str(path), "--quiet"]) == 2
    one_line_error(capsys, "train", "--test-data", "holds test rows of its own")


def test_the_books_pickle_validates_on_its_own_validation_part(tmp_path, capsys):
    X, y = labelled_rows()
    floats = X.astype(np.float32) / 255
    path = tmp_path / "mnist.pkl.gz"
    path.write_bytes(gzip.compress(pickle.dumps(((floats[:200], y[:200]), (floats[200:250], y[200:250]),
                                                 (floats[250:], y[250:])), protocol=2)))
    assert main(["train", "--data", str(path), "--epochs", "1", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "on 200 rows of mnist.pkl.gz, 50 validation rows, the file's own validation part" in text


def test_max_value_scales_a_csv_and_a_value_beyond_it_is_named(tmp_path, capsys):
    X, y = labelled_rows()
    unit = tmp_path / "unit.csv"
    write_csv(unit, np.round(X / 255, 4), y)
    assert main(["train", "--data", str(unit), "--label-column", "-1", "--max-value", "1", "--epochs", "1",
                 "--quiet"]) == 0
    assert "features / 1" in capsys.readouterr().out
    assert main(["train", "--data", str(write_csv(tmp_path / "bytes.csv", X, y)), "--label-column", "-1",
                 "--max-value", "1"]) == 2
    one_line_error(capsys, "train", "bytes.csv: line 2, column", "is outside [0, 1]")


# -- errors: one line, exit code 2, no traceback -------------------------------------------------

def damaged_csv(tmp_path):
    path = write_csv(tmp_path / "damaged.csv", *labelled_rows())
    lines = path.read_text().splitlines()
    lines[6] = "1,2,oops," + lines[6].split(",", 3)[3]  # line 7 of the file, column 2
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("command, extra", [("train", []), ("evaluate", ["model.npz"]), ("bench", ["--quick"]),
                                            ("sweep", ["--quick"])])
def test_a_damaged_file_is_one_line_naming_file_line_and_column(tmp_path, capsys, monkeypatch, command, extra):
    monkeypatch.chdir(tmp_path)
    if command == "evaluate":
        import mbtrain
        mbtrain.Network([N_FEATURES, 4, N_CLASSES]).save(tmp_path / "model.npz")
    path = damaged_csv(tmp_path)
    assert main([command, *extra, "--data", str(path), "--label-column", "-1"]) == 2
    one_line_error(capsys, command, f"{path}: line 7, column 2 (0-based): 'oops' is not a number")
    assert not (tmp_path / "mbtrain-results").exists()  # nothing written before the data was read


@pytest.mark.parametrize("command, extra", [("train", []), ("bench", []), ("sweep", [])])
def test_a_truncated_npz_is_one_line_naming_it(tmp_path, capsys, command, extra):
    X, y = labelled_rows()
    path = tmp_path / "cut.npz"
    np.savez(path, x_train=X, y_train=y)
    path.write_bytes(path.read_bytes()[:300])
    assert main([command, *extra, "--data", str(path), "--out", str(tmp_path / "out")]) == 2
    one_line_error(capsys, command, f"{path}:")


@pytest.mark.parametrize("command", ["train", "evaluate", "bench", "sweep"])
def test_data_and_dataset_exclude_each_other(capsys, csv_file, command):
    argv = [command] + (["m.npz"] if command == "evaluate" else []) + ["--data", str(csv_file), "--dataset", "digits"]
    assert main(argv) == 2
    one_line_error(capsys, command, "--data and --dataset: give one of them")


@pytest.mark.parametrize("argv, names", [
    (["train", "--label-column", "1"], ["--label-column: applies to your own data, given with --data"]),
    (["bench", "--max-value", "1"], ["--max-value: applies to your own data"]),
    (["sweep", "--test-data", "t.csv"], ["--test-data: applies to your own data"]),
    (["train", "--data", "{csv}", "--data-dir", "."], ["--data-dir: applies to --dataset fashion-mnist or mnist"]),
    (["train", "--data", "{npz}", "--label-column", "0"], ["--label-column: applies to CSV files", "is an .npz"]),
    (["train", "--data", "{csv}", "--label-column", "9"], ["--label-column: 9 is out of range", "7 columns"]),
    (["train", "--data", "{missing}"], ["missing.csv: no such file or directory"]),
    (["train", "--data", "{csv}", "--label-column", "-1", "--sizes", "784,30,10"],
     ["--sizes: the input width is 784 but mine.csv rows have 6 features"]),
    (["sweep", "--data", "{csv}", "--label-column", "-1", "--sizes", "6,30,10"],
     ["--sizes: the output width is 10 but mine.csv has 3 classes"]),
    (["train", "--data", "{tiny}", "--label-column", "-1"], ["has 2 rows: too few to hold out test rows"]),
    (["bench", "--data", "{empty}"], ["a directory of IDX files needs train-images-idx3-ubyte"]),
])
def test_options_that_do_not_apply_or_do_not_fit_are_named(tmp_path, capsys, csv_file, argv, names):
    X, y = labelled_rows()
    np.savez(tmp_path / "mine.npz", x_train=X, y_train=y)
    write_csv(tmp_path / "tiny.csv", X[:2], y[:2])
    (tmp_path / "empty").mkdir()
    paths = dict(csv=csv_file, npz=tmp_path / "mine.npz", missing=tmp_path / "missing.csv", tiny=tmp_path / "tiny.csv",
                 empty=tmp_path / "empty")
    argv = [arg.format(**paths) for arg in argv]
    assert main(argv) == 2
    one_line_error(capsys, argv[0], *names)


@pytest.mark.parametrize("label", [-3, 123456])
def test_a_label_that_is_no_class_number_is_named(tmp_path, capsys, label):
    X, y = labelled_rows()
    y = y.copy()
    y[17] = label
    path = write_csv(tmp_path / "ids.csv", X, y)
    assert main(["train", "--data", str(path), "--label-column", "-1"]) == 2
    one_line_error(capsys, "train", f"ids.csv: example 17 (0-based, in file order) has label {label}",
                   "below 10,000 (is the label column right?)")


# -- bench and sweep -----------------------------------------------------------------------------

def test_bench_on_a_csv_writes_its_reports_and_records_the_split(tmp_path, csv_file, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "--data", str(csv_file), "--label-column", "-1", "--arms", "numpy,numba",
                 "--dtype", "float32", "--batch-sizes", "10", "--repeats", "1", "--no-progress",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "60 of the file's 300 rows held out for testing (20%, stratified by label, seed 0)" in text
    for name in ("results.csv", "report.md", "machine.json"):
        assert (out / name).is_file()
    machine = json.loads((out / "machine.json").read_text())
    assert machine["dataset"] == "mine.csv"
    split = machine["data_split"]
    assert split["file"] == str(csv_file) and split["format"] == "csv"
    assert (split["test"], split["test_rows"], split["of_rows"], split["seed"], split["stratified"]) == (
        "held out", 60, 300, 0, True)
    assert split["train_rows"] + split["validation_rows"] + split["test_rows"] == N_ROWS
    assert "held out for testing" in machine["dataset_note"]
    assert "mine.csv" in (out / "report.md").read_text()


def test_sweep_on_a_csv_draws_a_stratified_validation_split_from_the_rest(tmp_path, csv_file, capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", "--data", str(csv_file), "--label-column", "-1", "--batch-sizes", "10,50", "--seeds", "1",
                 "--target", "0.6", "--max-epochs", "2", "--no-progress", "--out", str(out)]) == 0
    assert "validation rows drawn from the rest (0.167, stratified by label, seed 0)" in capsys.readouterr().out
    machine = json.loads((out / "machine.json").read_text())
    split = machine["data_split"]
    assert (split["validation"], split["validation_stratified"], split["validation_seed"]) == (
        "held out of the rest", True, 0)
    assert machine["settings"]["validation_rows"] == split["validation_rows"] == 40
    assert (out / "report.md").is_file() and (out / "results.csv").is_file()


def test_bench_data_holds_out_the_same_test_rows_as_train(csv_file):
    bench_data = load_file_data(csv_file, label_column=-1, dtype="float64")
    trained = load_file(csv_file, label_column=-1, dtype="float64")
    assert len(bench_data.y_train) + len(bench_data.y_val) == len(trained.y_train)
    rows = {tuple(r) for r in np.vstack([bench_data.X_train, bench_data.X_val]).round(6)}
    assert rows == {tuple(r) for r in trained.X_train.round(6)}
    # the validation rows keep the class balance of the rest
    np.testing.assert_allclose(np.bincount(bench_data.y_val) / len(bench_data.y_val),
                               np.bincount(trained.y_train) / len(trained.y_train), atol=0.02)
