"""Downloads (pooch) against a loopback HTTP server: checksums, mirror fall-through, atomic writes.

Never touches the internet: every URL is http://127.0.0.1:<port>/ on a server
this file starts, serving bytes the tests generate.
"""
import gzip
import hashlib
import http.server
import socket
import sys
import threading

import numpy as np
import pytest

from mbtrain import datasets
from mbtrain.datasets import DownloadError, catalog, remote

IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def idx_gz(items: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, items.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in items.shape)
    return gzip.compress(header + items.tobytes())


class Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.routes``: path -> (status, body, mode); mode "drop" closes mid-body."""

    def do_GET(self):
        self.server.hits.append(self.path)
        status, body, mode = self.server.routes.get(self.path, (404, b"not found", "full"))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if mode == "drop" else body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def httpd():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def server(httpd, monkeypatch):
    """The loopback server with no routes and no recorded requests; proxies off."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    httpd.routes, httpd.hits = {}, []
    return httpd


def serve(server, mirror: str, name: str, body: bytes, status=200, mode="full") -> str:
    server.routes[f"/{mirror}/{name}"] = (status, body, mode)
    return f"{server.url}/{mirror}/"


PAYLOAD = bytes(range(256)) * 1000  # 256 kB: several read chunks


def test_download_verifies_and_writes_atomically(server, tmp_path):
    mirror = serve(server, "a", "file.gz", PAYLOAD)
    path = datasets.download_file("file.gz", md5(PAYLOAD), [mirror], tmp_path / "cache", progress=False)
    assert path == tmp_path / "cache" / "file.gz"
    assert path.read_bytes() == PAYLOAD
    assert [p.name for p in path.parent.iterdir()] == ["file.gz"]  # no temporary left


def test_progress_bar_can_be_forced_on(server, tmp_path, capsys):
    mirror = serve(server, "a", "file.gz", PAYLOAD)
    datasets.download_file("file.gz", md5(PAYLOAD), mirror, tmp_path, progress=True)
    err = capsys.readouterr().err
    assert "file.gz:" in err and "B/s" in err  # tqdm's bar, labelled with the file (not only pooch's log line)


def test_progress_bar_off(server, tmp_path, capsys):
    mirror = serve(server, "a", "file.gz", PAYLOAD)
    datasets.download_file("file.gz", md5(PAYLOAD), mirror, tmp_path, progress=False)
    assert "B/s" not in capsys.readouterr().err


def test_a_verified_copy_already_there_is_not_fetched_again(server, tmp_path):
    mirror = serve(server, "a", "file.gz", PAYLOAD)
    datasets.download_file("file.gz", md5(PAYLOAD), [mirror], tmp_path, progress=False)
    assert (tmp_path / "file.gz").stat().st_mode & 0o777 == 0o644  # readable by all, like any data file
    datasets.download_file("file.gz", md5(PAYLOAD), [mirror], tmp_path, progress=False)
    assert server.hits == ["/a/file.gz"]


def test_without_pooch_the_error_says_what_to_install(server, tmp_path, monkeypatch):
    mirror = serve(server, "a", "file.gz", PAYLOAD)
    monkeypatch.setitem(sys.modules, "pooch", None)  # import pooch now raises ImportError
    with pytest.raises(DownloadError, match=r"pooch: pip install mbtrain\[download\]"):
        datasets.download_file("file.gz", md5(PAYLOAD), [mirror], tmp_path, progress=False)
    assert server.hits == [] and list(tmp_path.iterdir()) == []


def test_404_then_good_second_mirror(server, tmp_path):
    first = f"{server.url}/missing/"
    second = serve(server, "b", "file.gz", PAYLOAD)
    path = datasets.download_file("file.gz", md5(PAYLOAD), [first, second], tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert server.hits == ["/missing/file.gz", "/b/file.gz"]


def test_connection_dropped_midway_falls_through_to_next_mirror(server, tmp_path):
    first = serve(server, "a", "file.gz", PAYLOAD, mode="drop")
    second = serve(server, "b", "file.gz", PAYLOAD)
    path = datasets.download_file("file.gz", md5(PAYLOAD), [first, second], tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert server.hits == ["/a/file.gz", "/b/file.gz"]


def test_truncated_file_fails_checksum_and_leaves_nothing(server, tmp_path):
    mirror = serve(server, "a", "file.gz", PAYLOAD[:1000])  # served whole, but it is a truncated copy
    with pytest.raises(DownloadError, match=r"/a/file.gz: checksum mismatch.*1,000 bytes") as info:
        datasets.download_file("file.gz", md5(PAYLOAD), [mirror], tmp_path / "cache", progress=False)
    assert str(tmp_path / "cache") in str(info.value)
    assert list((tmp_path / "cache").iterdir()) == []


def test_every_mirror_failing_lists_each_attempt(server, tmp_path):
    dropped = serve(server, "a", "file.gz", PAYLOAD, mode="drop")
    wrong = serve(server, "b", "file.gz", b"other bytes")
    missing = f"{server.url}/c/"
    with pytest.raises(DownloadError) as info:
        datasets.download_file("file.gz", md5(PAYLOAD), [dropped, wrong, missing], tmp_path, progress=False)
    message = str(info.value)
    assert "could not download file.gz" in message
    assert "/a/file.gz: truncated: connection closed after 128,000 of 256,000 bytes" in message
    assert "/b/file.gz: checksum mismatch" in message
    assert "/c/file.gz: HTTP 404" in message
    assert isinstance(info.value, OSError)
    assert list(tmp_path.iterdir()) == []


def test_failed_download_keeps_a_previous_good_file(server, tmp_path):
    (tmp_path / "file.gz").write_bytes(b"previous")
    mirror = serve(server, "a", "file.gz", b"corrupted")
    with pytest.raises(DownloadError, match="checksum mismatch"):
        datasets.download_file("file.gz", md5(PAYLOAD), [mirror], tmp_path, progress=False)
    assert (tmp_path / "file.gz").read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["file.gz"]


def test_unreachable_mirror(tmp_path):
    with socket.socket() as probe:  # a loopback port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DownloadError, match=f"127.0.0.1:{port}/file.gz: cannot connect \\(Connection refused\\)"):
        datasets.download_file("file.gz", md5(PAYLOAD), [f"http://127.0.0.1:{port}/"], tmp_path,
                               progress=False, timeout=2)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_download_leaves_no_partial_file(server, tmp_path, monkeypatch):
    mirror = serve(server, "a", "file.gz", PAYLOAD)

    class InterruptingBar:
        def __init__(self, *args, **kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n):
            raise KeyboardInterrupt

    monkeypatch.setattr(remote, "tqdm", InterruptingBar)
    with pytest.raises(KeyboardInterrupt):
        datasets.download_file("file.gz", md5(PAYLOAD), [mirror], tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs, message", [
    (dict(filename="../escape.gz"), "filename"),
    (dict(filename="a/b.gz"), "filename"),
    (dict(md5="not-a-checksum"), "md5"),
    (dict(mirrors=[]), "mirrors"),
])
def test_download_arguments_are_checked(tmp_path, kwargs, message):
    args = dict(filename="file.gz", md5=md5(PAYLOAD), mirrors=["http://127.0.0.1:9/"], dest_dir=tmp_path)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        datasets.download_file(**args)


# -- load() fetching into the cache ----------------------------------------

@pytest.fixture
def mnist_on_loopback(server, tmp_path, monkeypatch):
    """A tiny 'mnist' served by the loopback server, with its real checksums; an empty cache."""
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(6, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (4, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(4, dtype=np.uint8),
    }
    checksums = {}
    for name, items in arrays.items():
        body = idx_gz(items)
        serve(server, "mirror", f"{name}.gz", body)
        checksums[f"{name}.gz"] = md5(body)
    spec = catalog.IdxDataset("mnist", "test", (f"{server.url}/down/", f"{server.url}/mirror/"), checksums)
    monkeypatch.setitem(catalog.IDX_DATASETS, "mnist", spec)
    monkeypatch.delenv("MBTRAIN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return arrays


def test_load_downloads_into_the_cache_once(server, mnist_on_loopback, tmp_path):
    X_train, y_train, X_test, y_test = datasets.load("mnist", progress=False)
    assert X_train.shape == (6, 784) and X_test.shape == (4, 784) and X_train.dtype == np.float32
    np.testing.assert_array_equal(y_test, np.arange(4))
    cache = tmp_path / "cache" / "mbtrain" / "mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{n}.gz" for n in IDX_NAMES)
    assert server.hits.count("/down/train-images-idx3-ubyte.gz") == 1  # first mirror 404s, second serves
    hits = len(server.hits)
    datasets.load("mnist")
    assert len(server.hits) == hits  # second load: from the cache, no request


def test_load_completes_a_partial_cache(server, mnist_on_loopback, tmp_path):
    datasets.load("mnist", progress=False)
    (tmp_path / "cache" / "mbtrain" / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    server.hits.clear()
    datasets.load("mnist", progress=False)
    assert server.hits == ["/down/t10k-labels-idx1-ubyte.gz", "/mirror/t10k-labels-idx1-ubyte.gz"]


def test_load_when_downloads_fail_says_where_it_looked(server, mnist_on_loopback, tmp_path):
    server.routes.clear()
    with pytest.raises(DownloadError) as info:
        datasets.load("mnist", data_dir=tmp_path / "mine", progress=False)
    message = str(info.value)
    assert str(tmp_path / "mine") in message and str(tmp_path / "cache" / "mbtrain" / "mnist") in message
    assert "/down/train-images-idx3-ubyte.gz: HTTP 404" in message
    assert "/mirror/train-images-idx3-ubyte.gz: HTTP 404" in message


def test_load_without_pooch_says_where_it_looked_and_what_to_install(mnist_on_loopback, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pooch", None)
    with pytest.raises(DownloadError) as info:
        datasets.load("mnist", progress=False)
    message = str(info.value)
    assert str(tmp_path / "cache" / "mbtrain" / "mnist") in message
    assert "pip install mbtrain[download]" in message


def test_cli_without_pooch_is_one_line_naming_the_fix(mnist_on_loopback, monkeypatch, capsys):
    from mbtrain.cli import main

    monkeypatch.setitem(sys.modules, "pooch", None)
    assert main(["train", "--dataset", "mnist", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "pip install mbtrain[download]" in err
