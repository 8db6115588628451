"""The normalised-data cache: keyed by content, and rebuilt when damaged."""

import json
import os
import pickle

import numpy as np
import pytest

from core.data import FOLDER, DataError
from sweep.objectives import datacache
from tests.conftest import write_cifar


@pytest.fixture
def root(tmp_path):
    return write_cifar(tmp_path / "data", per_batch=200)


def test_data_changed_in_place_with_size_and_mtime_restored_gets_a_new_cache(root):
    # As `cp -p`, `rsync -t` or a backup restore leave it: same size, same mtime.
    first = datacache.prepare("exercise", root)
    batch = root / FOLDER / "data_batch_1"
    st = batch.stat()
    with open(batch, "rb") as f:
        content = pickle.load(f, encoding="bytes")
    # The same images in another order: other data, and (the same bytes) the same size.
    content[b"data"] = np.ascontiguousarray(content[b"data"][::-1])
    content[b"labels"] = content[b"labels"][::-1]
    with open(batch, "wb") as f:
        pickle.dump(content, f, protocol=2)
    os.utime(batch, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert batch.stat().st_size == st.st_size and batch.stat().st_mtime_ns == st.st_mtime_ns

    second = datacache.prepare("exercise", root)
    assert second.fingerprint != first.fingerprint  # the old key reused the stale copy
    old = np.load(first.folder / "X_train.npy")
    new = np.load(second.folder / "X_train.npy")
    assert not np.array_equal(old, new)


def test_unchanged_data_reuses_the_cache_and_remembers_digests(root):
    first = datacache.prepare("exercise", root)
    memo = json.loads((root / datacache.CACHE / datacache.DIGESTS).read_text())
    assert len(memo) == 6  # five training batches and the test batch
    again = datacache.prepare("exercise", root)
    assert again.folder == first.folder and again.notes == []


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda f: (f / "X_train.npy").write_bytes((f / "X_train.npy").read_bytes()[:1000]),
            "X_train.npy has",
        ),
        (lambda f: (f / "meta.json").unlink(), "meta.json"),
        (lambda f: (f / "y_val.npy").unlink(), "y_val.npy is missing"),
    ],
    ids=["truncated", "no-meta", "missing-array"],
)
def test_a_damaged_cache_is_detected_and_rebuilt(root, damage, message):
    good = datacache.prepare("exercise", root)
    expected = np.load(good.folder / "X_train.npy")
    damage(good.folder)
    with pytest.raises(DataError, match="is damaged"):
        datacache.open_split(good.folder)  # a worker says what to do, no mmap traceback
    rebuilt = datacache.prepare("exercise", root)
    assert rebuilt.folder == good.folder
    assert len(rebuilt.notes) == 1 and message in rebuilt.notes[0] and "rebuilt" in rebuilt.notes[0]
    np.testing.assert_array_equal(datacache.open_split(rebuilt.folder).X_train, expected)


@pytest.mark.skipif(os.name != "posix", reason="modes beyond read-only are POSIX's")
def test_the_cache_can_be_read_by_the_others_the_umask_lets_in(root):
    old = os.umask(0o022)
    try:
        folder = datacache.prepare("exercise", root).folder
    finally:
        os.umask(old)
    assert folder.stat().st_mode & 0o777 == 0o755  # not tempfile's private 0700
    for path in (folder / "meta.json", folder.parent / datacache.DIGESTS):
        assert path.stat().st_mode & 0o777 == 0o644, path


def test_a_data_folder_the_cache_cannot_be_made_in_gets_it_in_the_user_cache(
    root, tmp_path, monkeypatch
):
    # As on a shared, read-only or another user's data folder (here: a file is in the way,
    # which fails for root as well); the sweep's processes all look in the same place.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    (root / datacache.CACHE).write_text("not a folder")
    cached = datacache.prepare("exercise", root)
    assert cached.folder.parent == datacache.user_cache_dir() / "splits"
    assert tmp_path / "user-cache" in cached.folder.parents
    assert datacache.load("exercise", root).sizes["train"] == 200  # what a worker opens
    assert datacache.prepare("exercise", root).folder == cached.folder  # and reused


def test_a_copy_already_in_a_read_only_data_folder_is_used(root, tmp_path, monkeypatch):
    made = datacache.prepare("exercise", root).folder  # by whoever could write there
    monkeypatch.setattr(datacache, "cache_dir", lambda _root: tmp_path / "elsewhere")
    assert datacache.prepare("exercise", root).folder == made


def test_no_writable_cache_at_all_is_one_data_error(root, tmp_path, monkeypatch):
    monkeypatch.setattr(datacache, "cache_dir", lambda _root: tmp_path / "file" / "splits")
    (tmp_path / "file").write_text("in the way")
    with pytest.raises(DataError, match=r"cannot write the normalised copy .*XDG_CACHE_HOME"):
        datacache.prepare("exercise", root)


def test_a_data_folder_that_looks_writable_but_is_not_falls_back_to_the_user_cache(
    root, tmp_path, monkeypatch
):
    # As with a Windows ACL: os.access says the folder is writable, creating in it fails.
    import tempfile
    from pathlib import Path

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    real = tempfile.mkdtemp

    def denied(prefix, dir):
        if Path(dir) == root / datacache.CACHE:
            raise PermissionError(13, "Access is denied")
        return real(prefix=prefix, dir=dir)

    monkeypatch.setattr(datacache.tempfile, "mkdtemp", denied)
    cached = datacache.prepare("exercise", root)
    assert cached.folder.parent == datacache.user_cache_dir() / "splits"
    assert datacache.open_split(cached.folder).sizes["train"] == 200
    built = []
    monkeypatch.setattr(datacache, "_build", lambda *args: built.append(args))
    assert datacache.prepare("exercise", root).folder == cached.folder and not built  # reused


def _left(root):
    return sorted(p.name for p in (root / datacache.CACHE).iterdir() if p.is_dir())


def test_a_disk_without_room_for_the_copy_is_one_line_before_anything_is_written(root, monkeypatch):
    usage = datacache.shutil.disk_usage
    monkeypatch.setattr(datacache.shutil, "disk_usage", lambda p: usage(p)._replace(free=1000))
    with pytest.raises(DataError, match=r"^no space left in .* \(0\.\d\d GB\); free some space"):
        datacache.prepare("exercise", root)
    assert _left(root) == []  # no staging folder, no copy


def test_a_disk_that_fills_while_the_copy_is_written_is_the_same_line(root, monkeypatch):
    # Another program filled it meanwhile: numpy's own error, which carries no errno.
    def full(path, array):
        raise OSError(f"Not enough free space to write {array.nbytes} bytes after offset 128")

    monkeypatch.setattr(datacache.np, "save", full)
    with pytest.raises(DataError, match=r"^no space left in .*; free some space there"):
        datacache.prepare("exercise", root)
    assert _left(root) == []


def test_a_mirror_variable_set_to_nothing_means_the_default(tmp_path, monkeypatch):
    # SWEEP_CIFAR_URL= was used as given: "cannot download CIFAR-10 from  (unknown url
    # type: '')" (hostile pass), while an empty SWEEP_DATA_DIR meant the default.
    from core import data as core_data
    from sweep.objectives import data

    asked = {}
    monkeypatch.setattr(core_data, "ensure", lambda root, **kwargs: asked.update(kwargs))
    monkeypatch.setenv("SWEEP_CIFAR_URL", "")
    monkeypatch.setenv("SWEEP_CIFAR_MD5", "")
    data.ensure_data(tmp_path)
    assert (asked["url"], asked["md5"]) == (core_data.URL, core_data.MD5)


def test_an_archive_put_there_by_hand_is_said_to_be_extracted_not_downloaded(
    tmp_path, monkeypatch, caplog
):
    from core import data as core_data
    from sweep.objectives import data

    (tmp_path / core_data.ARCHIVE).write_bytes(b"put here by hand")
    monkeypatch.setattr(core_data, "ensure", lambda root, **kwargs: None)
    data.ensure_data(tmp_path)
    assert f"extracting {tmp_path / core_data.ARCHIVE}" in caplog.text
    assert "downloading" not in caplog.text
