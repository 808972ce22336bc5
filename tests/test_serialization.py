"""Saving and loading: round trips, network2 JSON, atomic writes, bad files."""
import json
import os

import numpy as np
import pytest

import mbtrain
from mbtrain.synthetic import make_blobs


@pytest.fixture
def trained():
    X, y = make_blobs(n_samples=200, n_features=6, n_classes=3, seed=0)
    net = mbtrain.Network([6, 5, 3], cost="cross_entropy", init="scaled", dtype="float32", seed=4)
    net.fit(X, y, epochs=2, batch_size=10, eta=0.5)
    return net, X, y


def test_npz_round_trip_keeps_everything(trained, tmp_path):
    net, X, y = trained
    path = net.save(tmp_path / "model.npz")
    loaded = mbtrain.load(path)
    assert loaded.sizes == net.sizes and loaded.cost.name == "cross_entropy"
    assert loaded.init == "scaled" and loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded.params, net.params)
    assert list(loaded.history["epoch"]) == [1, 2]
    np.testing.assert_allclose(loaded.history["train_loss"], net.history["train_loss"])
    # the random stream is saved too: training continues identically
    net.fit(X, y, epochs=1, batch_size=10, eta=0.5)
    loaded.fit(X, y, epochs=1, batch_size=10, eta=0.5)
    np.testing.assert_array_equal(loaded.params, net.params)


def test_load_can_cast(trained, tmp_path):
    net, _, _ = trained
    loaded = mbtrain.load(net.save(tmp_path / "m.npz"), dtype="float64")
    assert loaded.dtype == np.float64
    np.testing.assert_array_equal(loaded.params, net.params.astype(np.float64))


def book_network2_json(sizes, seed=0, cost="CrossEntropyCost"):
    """What the book's network2.Network.save writes: (n, 1) columns, cost class name."""
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal((o, i)) / np.sqrt(i) for i, o in zip(sizes[:-1], sizes[1:])]
    biases = [rng.standard_normal((o, 1)) for o in sizes[1:]]
    return {"sizes": sizes, "weights": [w.tolist() for w in weights],
            "biases": [b.tolist() for b in biases], "cost": cost}, weights, biases


def test_loads_a_model_saved_by_the_books_code(tmp_path):
    data, weights, biases = book_network2_json([4, 3, 2])
    path = tmp_path / "from_the_book.json"
    path.write_text(json.dumps(data))
    net = mbtrain.load(path)
    assert net.cost.name == "cross_entropy" and net.dtype == np.float64
    for w, expected in zip(net.weights, weights):
        np.testing.assert_array_equal(w, expected)
    for b, expected in zip(net.biases, biases):
        np.testing.assert_array_equal(b, expected[:, 0])
    # the book's feedforward on a column vector gives the same output
    x = np.linspace(0, 1, 4)
    a = x[:, None]
    for w, b in zip(weights, biases):
        a = 1 / (1 + np.exp(-(w @ a + b)))
    np.testing.assert_allclose(net.forward(x[None, :])[0], a[:, 0], rtol=1e-12)


def test_network2_round_trip_and_content_sniffing(trained, tmp_path):
    net, _, _ = trained
    path = tmp_path / "model.npz"  # a misleading name: the content decides
    net.save(path, format="network2")
    data = json.loads(path.read_text())
    assert data["cost"] == "CrossEntropyCost" and np.shape(data["biases"][0]) == (5, 1)
    loaded = mbtrain.load(path, dtype="float32")
    np.testing.assert_array_equal(loaded.params, net.params)


def test_network2_cannot_hold_softmax(tmp_path):
    net = mbtrain.Network([3, 2], cost="softmax")
    with pytest.raises(ValueError, match="network2 format has no 'softmax' cost"):
        net.save(tmp_path / "m.json", format="network2")


def test_failed_save_keeps_the_previous_good_file(trained, tmp_path, monkeypatch):
    net, _, _ = trained
    path = net.save(tmp_path / "model.npz")
    good = path.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    net.params[:] = 0
    with pytest.raises(OSError, match="No space left"):
        net.save(path)
    assert path.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]  # no temporary left behind


def test_save_into_a_missing_directory_is_a_clear_error(trained, tmp_path):
    net, _, _ = trained
    with pytest.raises(FileNotFoundError, match="does not exist"):
        net.save(tmp_path / "nope" / "model.npz")


@pytest.mark.parametrize("content, message", [
    (b"", "not valid JSON"),
    (b"\x00\x01garbage", "not a saved model"),
    (b"{\"sizes\": [2, 1]}", "JSON but not a network2 model"),
    (b"[1, 2, 3]", "not a saved model"),
])
def test_foreign_files_are_refused_with_a_reason(tmp_path, content, message):
    path = tmp_path / "model.bin"
    path.write_bytes(content)
    with pytest.raises(mbtrain.ModelFormatError, match=message):
        mbtrain.load(path)


def test_truncated_npz_is_refused(trained, tmp_path):
    net, _, _ = trained
    path = net.save(tmp_path / "model.npz")
    data = path.read_bytes()
    for cut in (len(data) // 2, len(data) - 30, 10):
        path.write_bytes(data[:cut])
        with pytest.raises(mbtrain.ModelFormatError, match="corrupted or truncated|not a saved model"):
            mbtrain.load(path)


def test_foreign_npz_is_refused(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, x_train=np.zeros(3))
    with pytest.raises(mbtrain.ModelFormatError, match="not an mbtrain model"):
        mbtrain.load(path)


def test_npz_with_wrong_parameter_count_is_refused(trained, tmp_path):
    net, _, _ = trained
    path = net.save(tmp_path / "model.npz")
    with np.load(path) as archive:
        parts = dict(archive)
    parts["params"] = parts["params"][:-1]
    np.savez(path, **parts)
    with pytest.raises(mbtrain.ModelFormatError, match="parameters but sizes"):
        mbtrain.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        mbtrain.load(tmp_path / "nothing.npz")
