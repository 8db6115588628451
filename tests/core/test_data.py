import hashlib
import http.server
import io
import pickle
import tarfile
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest

from core import data
from core.errors import ConfigError, DataError
from tests.conftest import write_cifar


def test_loader_reads_bytes_and_str_keys(tmp_path):
    for str_keys in (False, True):
        root = write_cifar(tmp_path / str(str_keys), per_batch=30, str_keys=str_keys)
        X, y = data.load_batch(root / data.FOLDER / "data_batch_1")
        assert X.shape == (30, 3072) and X.dtype == np.uint8
        assert y.shape == (30,) and y.min() >= 0 and y.max() <= 9


def test_splits_have_the_documented_sizes_and_normalisation(tmp_path):
    root = write_cifar(tmp_path, per_batch=1100)
    ex = data.load_split("exercise", root)
    assert ex.sizes == {"train": 1100, "val": 1100, "test": 1100}
    search = data.load_split("search", root)
    assert search.sizes == {"train": 500, "val": 5000, "test": 1100}
    final = data.load_split("final", root, dtype="float64")
    assert final.sizes == {"train": 4500, "val": 1000, "test": 1100}
    assert final.X_train.dtype == np.float64 and ex.X_train.dtype == np.float32
    # Training part: zero mean, unit std per pixel; the others use the training statistics.
    np.testing.assert_allclose(final.X_train.mean(axis=0), 0, atol=1e-9)
    np.testing.assert_allclose(final.X_train.std(axis=0), 1, rtol=1e-6)
    raw_val, _ = data.load_batch(root / data.FOLDER / "data_batch_5")
    expected = (raw_val[-1000:] - final.mean) / final.std
    np.testing.assert_allclose(final.X_val, expected, rtol=1e-9)
    assert "last 1000" in final.validation


def test_unknown_split_and_missing_or_corrupt_files(tmp_path):
    with pytest.raises(
        ConfigError, match="unknown split 'big'; choose one of exercise, search, final"
    ):
        data.load_split("big", tmp_path)
    with pytest.raises(DataError, match="no CIFAR-10 data"):
        data.load_split("exercise", tmp_path)
    root = write_cifar(tmp_path / "c", per_batch=20)
    (root / data.FOLDER / "data_batch_2").write_bytes(b"garbage")
    with pytest.raises(DataError, match="data_batch_2 is not a CIFAR-10 batch"):
        data.load_split("exercise", root)
    (root / data.FOLDER / "test_batch").unlink()
    with pytest.raises(DataError, match="missing data file"):
        data.load_batch(root / data.FOLDER / "test_batch")


class _RunsCode:
    def __reduce__(self):
        import os

        return (os.mkdir, (self.path,))


def test_a_batch_that_would_run_code_is_refused_unrun(tmp_path):
    root = write_cifar(tmp_path / "c", per_batch=20)
    crafted = _RunsCode()
    crafted.path = str(tmp_path / "ran")
    (root / data.FOLDER / "data_batch_1").write_bytes(pickle.dumps({b"data": crafted}))
    with pytest.raises(DataError, match="mkdir, which no batch has"):
        data.load_batch(root / data.FOLDER / "data_batch_1")
    assert not (tmp_path / "ran").exists()
    assert len(data.load_batch(root / data.FOLDER / "data_batch_2")[0]) == 20  # a real one


# --- download against a real HTTP server on 127.0.0.1 ---------------------------------


def _archive(tmp_path: Path) -> bytes:
    src = write_cifar(tmp_path / "src", per_batch=20)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(src / data.FOLDER, arcname=data.FOLDER)
    return buf.getvalue()


def _serve(payload: bytes, before=lambda: None) -> tuple[http.server.HTTPServer, str]:
    """A real HTTP server on 127.0.0.1 answering every GET with ``payload`` (after
    ``before()``), and the archive's URL on it."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            before()
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/cifar-10-python.tar.gz"


@pytest.fixture
def server(tmp_path):
    payload = _archive(tmp_path)
    httpd, url = _serve(payload)
    yield url, hashlib.md5(payload).hexdigest()
    httpd.shutdown()
    httpd.server_close()


def test_download_verifies_and_extracts(server, tmp_path):
    url, md5 = server
    root = tmp_path / "cache"
    seen = []
    folder = data.ensure(root, url=url, md5=md5, progress=lambda done, total: seen.append(total))
    assert folder == root / data.FOLDER
    assert data.load_split("exercise", root).sizes["train"] == 20
    assert seen and seen[-1] is not None
    assert sorted(p.name for p in root.iterdir()) == sorted([data.ARCHIVE, data.FOLDER])


def test_md5_mismatch_is_an_error_and_leaves_nothing_behind(server, tmp_path):
    url, _ = server
    root = tmp_path / "cache"
    with pytest.raises(DataError, match="wrong md5 checksum"):
        data.ensure(root, url=url, md5="0" * 32)
    assert list(root.iterdir()) == []


def test_server_gone_says_where_to_put_the_archive(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    root = tmp_path / "cache"
    with pytest.raises(DataError) as info:
        data.ensure(root, url=f"http://127.0.0.1:{port}/x.tar.gz", md5="0" * 32, timeout=5)
    message = str(info.value)
    assert "cannot download CIFAR-10" in message
    assert str(root / data.ARCHIVE) in message
    assert list(root.iterdir()) == []


def test_two_commands_downloading_into_one_folder_at_once_both_get_it(tmp_path):
    # The server answers only when both requests are in: both commands found no folder,
    # both download and extract, and the second rename meets the first one's folder.
    payload = _archive(tmp_path)
    httpd, url = _serve(payload, before=threading.Barrier(2, timeout=10).wait)
    md5 = hashlib.md5(payload).hexdigest()
    try:
        for attempt in range(3):
            root = tmp_path / f"cache{attempt}"
            outcomes = []

            def fetch(root=root, outcomes=outcomes):
                try:
                    outcomes.append(data.ensure(root, url=url, md5=md5))
                except Exception as exc:  # the test reports it
                    outcomes.append(exc)

            threads = [threading.Thread(target=fetch) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert outcomes == [root / data.FOLDER] * 2
            assert data.load_split("exercise", root).sizes["train"] == 20
            assert sorted(p.name for p in root.iterdir()) == sorted([data.ARCHIVE, data.FOLDER])
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_an_archive_missing_batches_puts_no_folder_in_place(tmp_path):
    # Its checksum is right (a mirror's own md5), but it holds one batch of six.
    src = write_cifar(tmp_path / "src", per_batch=20)
    root = tmp_path / "cache"
    md5 = _by_hand(
        root, lambda tar: tar.add(src / data.FOLDER / "data_batch_1", f"{data.FOLDER}/data_batch_1")
    )
    with pytest.raises(DataError, match=r"lacks cifar-10-batches-py/data_batch_2 .*delete it"):
        data.ensure(root, url="http://127.0.0.1:9/unused", md5=md5)
    assert sorted(p.name for p in root.iterdir()) == [data.ARCHIVE]


def test_archive_put_by_hand_is_used(server, tmp_path):
    url, md5 = server
    import urllib.request

    root = tmp_path / "cache"
    root.mkdir()
    (root / data.ARCHIVE).write_bytes(urllib.request.urlopen(url).read())
    data.ensure(root, url="http://127.0.0.1:9/unused", md5=md5)
    assert (root / data.FOLDER / "test_batch").is_file()


# --- safe extraction without tarfile's filter (Python 3.11.0-3.11.3, e.g. Debian 12) -----


@pytest.fixture(params=["filter", "no filter"])
def filtered(request, monkeypatch):
    """Each test twice: with this Python's tarfile, and with extractall as Python 3.11.2
    has it (no ``filter`` argument, so a TypeError; nothing filtered)."""
    if request.param == "no filter" and hasattr(tarfile, "data_filter"):
        real = tarfile.TarFile.extractall

        def extractall(self, path=".", members=None, *, numeric_owner=False):
            return real(self, path, members, numeric_owner=numeric_owner, filter="fully_trusted")

        monkeypatch.setattr(tarfile.TarFile, "extractall", extractall)
    # Whether tarfile's own "data" filter does the checking (on Python 3.11.2 it never does).
    return request.param == "filter" and hasattr(tarfile, "data_filter")


def _by_hand(root: Path, add) -> str:
    """Put an archive built by ``add(tar)`` at root/cifar-10-python.tar.gz; its md5."""
    root.mkdir(parents=True)
    with tarfile.open(root / data.ARCHIVE, "w:gz") as tar:
        add(tar)
    return hashlib.md5((root / data.ARCHIVE).read_bytes()).hexdigest()


def _member(tar, name, *, kind=tarfile.REGTYPE, link="", payload=b"x", mode=0o644):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, mode
    info.size = len(payload) if kind == tarfile.REGTYPE else 0
    tar.addfile(info, io.BytesIO(payload) if kind == tarfile.REGTYPE else None)


def _batches(tar) -> None:
    """Every batch file, as placeholders: an archive without one is refused as incomplete."""
    for name in (*data.TRAIN_BATCHES, data.TEST_BATCH):
        _member(tar, f"{data.FOLDER}/{name}")


def test_old_tarfile_still_extracts_the_archive(server, tmp_path, filtered):
    url, md5 = server
    root = tmp_path / "cache"
    assert data.ensure(root, url=url, md5=md5) == root / data.FOLDER
    assert data.load_split("exercise", root).sizes["train"] == 20


@pytest.mark.parametrize(
    "member",
    [
        {"name": "../escaped"},
        {"name": "{tmp}/escaped-absolute"},  # an absolute name (tmp_path)
        {"name": f"{data.FOLDER}/../../escaped"},
        {"name": f"{data.FOLDER}/link", "kind": tarfile.SYMTYPE, "link": "/etc/passwd"},
        {"name": f"{data.FOLDER}/link", "kind": tarfile.SYMTYPE, "link": "../../escaped"},
        {"name": f"{data.FOLDER}/hard", "kind": tarfile.LNKTYPE, "link": "../escaped"},
        {"name": f"{data.FOLDER}/dev", "kind": tarfile.CHRTYPE},
        {"name": f"{data.FOLDER}/fifo", "kind": tarfile.FIFOTYPE},
    ],
    ids=[
        "dotdot",
        "absolute",
        "nested-dotdot",
        "abs-symlink",
        "out-symlink",
        "out-hardlink",
        "device",
        "fifo",
    ],
)
def test_unsafe_members_refuse_the_archive(tmp_path, filtered, member):
    root = tmp_path / "deep" / "cache"
    member = {**member, "name": member["name"].format(tmp=tmp_path)}
    md5 = _by_hand(root, lambda tar: (_batches(tar), _member(tar, **member)))
    if member["name"].startswith("/") and filtered:
        # tarfile's "data" filter strips the leading slash: the file lands inside instead.
        data.ensure(root, url="http://127.0.0.1:9/unused", md5=md5)
    else:
        with pytest.raises(DataError, match="cannot extract"):
            data.ensure(root, url="http://127.0.0.1:9/unused", md5=md5)
        assert sorted(p.name for p in root.iterdir()) == [data.ARCHIVE]  # no staging left
    assert sorted(p.name for p in (tmp_path / "deep").iterdir()) == ["cache"]
    assert not (tmp_path / "escaped-absolute").exists()


def test_extracted_files_lose_set_id_and_write_bits(tmp_path, filtered):
    root = tmp_path / "cache"
    md5 = _by_hand(
        root, lambda tar: (_batches(tar), _member(tar, f"{data.FOLDER}/tool", mode=0o6777))
    )
    data.ensure(root, url="http://127.0.0.1:9/unused", md5=md5)
    assert (root / data.FOLDER / "tool").stat().st_mode & 0o7777 == 0o755


def test_a_mistyped_data_dir_is_refused_without_creating_it(tmp_path, capsys):
    from tests.conftest import check

    missing = tmp_path / "nonexistent" / "x"
    check(capsys, ["train", "--data-dir", str(missing), "--n-s", "2"], "does not exist")
    assert not (tmp_path / "nonexistent").exists()


def test_a_mistyped_sweep_data_dir_is_refused_as_the_flag_is(tmp_path, capsys, monkeypatch):
    # The variable made the folder and started a download into it (README truth pass).
    from tests.conftest import check

    missing = tmp_path / "nonexistent" / "x"
    monkeypatch.setenv("SWEEP_DATA_DIR", str(missing))
    monkeypatch.setenv("SWEEP_CIFAR_URL", "http://127.0.0.1:9/none.tar.gz")
    check(capsys, ["train", "--n-s", "2"], f"$SWEEP_DATA_DIR {missing} does not exist")
    assert not (tmp_path / "nonexistent").exists()


@pytest.mark.parametrize(
    ("labels", "images", "message"),
    [
        (["a"] * 10, 10, "labels must be 10 integers, one per image; got <U1"),
        (
            [[0]] * 10,
            10,
            r"labels must be 10 integers, one per image; got int64 of shape \(10, 1\)",
        ),
        ([float("nan")] * 10, 10, "labels must be 10 integers, one per image; got float64"),
        ([], 0, "holds no images"),
    ],
    ids=["text", "2-d", "nan", "empty"],
)
def test_odd_labels_or_no_images_are_one_data_error_without_warnings(
    tmp_path, labels, images, message
):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": np.zeros((images, 3072), np.uint8), b"labels": labels}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning printed ahead of the error line
        with pytest.raises(DataError, match=message):
            data.load_batch(path)


def test_partial_downloads_left_by_a_killed_process_are_removed_by_the_next(server, tmp_path):
    import os
    import time

    url, md5 = server
    root = tmp_path / "cache"
    root.mkdir()
    old, fresh = root / ".download-killed", root / ".download-running"
    (root / ".extract-killed").mkdir()
    for path in (old, fresh):
        path.write_bytes(b"x" * 1000)
    past = time.time() - data.STALE_SECONDS - 60
    for path in (old, root / ".extract-killed"):
        os.utime(path, (past, past))
    data.ensure(root, url=url, md5=md5)
    assert sorted(p.name for p in root.iterdir()) == sorted(
        [data.ARCHIVE, data.FOLDER, fresh.name]  # another process's download is left alone
    )


def _raw_server(reply: bytes) -> tuple[object, str]:
    """A real TCP server on 127.0.0.1 that sends ``reply`` to each connection and closes
    it (a reply cut short, or no HTTP at all), and a URL on it."""
    import socket

    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # closed: the test is over
                return
            with conn:
                conn.recv(65536)
                conn.sendall(reply)

    threading.Thread(target=serve, daemon=True).start()
    return listener, f"http://127.0.0.1:{listener.getsockname()[1]}/cifar-10-python.tar.gz"


@pytest.mark.parametrize(
    "reply",
    [
        # Chunked, and closed 50,000 bytes into a 100,000-byte chunk: http.client's
        # IncompleteRead, which ended the command in a traceback (hostile pass).
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n186a0\r\n" + b"x" * 50_000,
        b"GARBAGE\r\n\r\n",  # not HTTP: BadStatusLine, a traceback too
    ],
    ids=["cut-mid-chunk", "not-http"],
)
def test_a_reply_cut_short_or_not_http_is_one_data_error(tmp_path, reply):
    listener, url = _raw_server(reply)
    root = tmp_path / "cache"
    try:
        with pytest.raises(DataError, match=r"^cannot download CIFAR-10 from .*by hand"):
            data.ensure(root, url=url, md5="0" * 32, timeout=10)
    finally:
        listener.close()
    assert list(root.iterdir()) == []


@pytest.mark.parametrize("stage", ["download", "extract"])
def test_a_data_folder_that_cannot_be_written_is_one_data_error(
    server, tmp_path, monkeypatch, stage
):
    # mkstemp/mkdtemp raised a bare OSError (EROFS on a read-only mount): a traceback.
    # (Simulated: the tests may run as root, whom file modes do not stop.)
    import errno
    import tempfile

    url, md5 = server
    root = tmp_path / "cache"
    root.mkdir()
    if stage == "extract":  # an archive put there by hand
        import urllib.request

        (root / data.ARCHIVE).write_bytes(urllib.request.urlopen(url).read())

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp" if stage == "download" else "mkdtemp", read_only)
    with pytest.raises(DataError, match=rf"^cannot write CIFAR-10 into {root} \(Read-only"):
        data.ensure(root, url=url, md5=md5)
    assert not (root / data.FOLDER).exists()


def test_a_file_where_the_folder_goes_is_refused_before_any_download(tmp_path):
    root = tmp_path / "cache"
    root.mkdir()
    (root / data.FOLDER).write_text("not a folder")
    # Nothing listens on port 9: a download attempt would be another error.
    with pytest.raises(DataError, match=r"cifar-10-batches-py is a file, not the CIFAR-10"):
        data.ensure(root, url="http://127.0.0.1:9/x.tar.gz", md5="0" * 32)


def test_an_upper_case_checksum_is_the_same_checksum(server, tmp_path):
    url, md5 = server
    assert data.ensure(tmp_path / "cache", url=url, md5=md5.upper()).is_dir()


def test_the_progress_moves_every_64_kb(tmp_path):
    # 1 MB reads: on a slow link the bar showed nothing for the first MB (20 s at 50 KB/s).
    payload = np.random.default_rng(0).bytes(300_000)
    httpd, url = _serve(payload)
    seen: list[int] = []
    try:
        with pytest.raises(DataError, match="cannot extract"):  # not an archive: only read
            data.ensure(tmp_path / "c", url=url, md5=hashlib.md5(payload).hexdigest(),
                        progress=lambda done, total: seen.append(done))  # fmt: skip
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert len(seen) >= 5 and seen[-1] == len(payload) and seen[0] <= 1 << 16


def test_a_mirror_url_that_is_not_a_url_says_so(tmp_path):
    # "the server's reply is not valid HTTP: InvalidURL", where no server was asked.
    with pytest.raises(DataError, match=r"\(not a valid URL: URL can't contain control"):
        data.ensure(tmp_path / "c", url="http://127.0.0.1:9/a b.tar.gz", md5="0" * 32)
