"""One normalised copy of a split on disk, memory-mapped by every worker.

The orchestrator loads and normalises a split once and saves it as .npy files next to the
data; workers open them with mmap_mode="r", so the operating system's page cache holds the
data once for all workers instead of once per process.

The copy is keyed by the *content* of the batch files (a BLAKE2 digest), so data changed in
place is never mistaken for the old data, whatever its size and modification time. Hashing
the ~180 MB of batches costs ~0.3 s, so each file's digest is remembered against its
(size, mtime, inode, ctime): ctime changes on every write and cannot be set back by
`cp -p`, `rsync -t`, `touch` or tar, which makes the fast path safe.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core import data
from sweep.errors import disk_full
from sweep.objectives.data import ensure_data
from sweep.system.portable import user_cache_dir

ARRAYS = ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test", "mean", "std")
CACHE = ".lambda-sweep-cache"
DIGESTS = "digests.json"  # file -> its stat signature and content digest


class Unwritable(data.DataError):
    """Neither the data folder nor the per-user cache folder takes a copy."""


@dataclass(frozen=True)
class Cached:
    folder: Path
    fingerprint: str  # split, dtype and the batch files' content: what a trial trained on
    root: Path  # the data root (holding cifar-10-batches-py/)
    notes: list[str] = field(default_factory=list)


def _signature(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]


def file_digest(path: Path, memo: dict[str, dict]) -> str:
    """BLAKE2b of the file's bytes; reused from ``memo`` while its stat signature holds."""
    st = path.stat()
    known = memo.get(path.name)
    if known and known["stat"] == _signature(st):
        return known["digest"]
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    memo[path.name] = {"stat": _signature(st), "digest": h.hexdigest()}
    return h.hexdigest()


def fingerprint(root: Path, split: str, dtype: str) -> str:
    """Identifies the normalised split: changes whenever any batch file's content does."""
    cache = root / CACHE
    memo_path = cache / DIGESTS
    try:
        memo = json.loads(memo_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        memo = {}
    before = json.dumps(memo, sort_keys=True)
    h = hashlib.sha1(f"{split}:{dtype}".encode())
    folder = root / data.FOLDER
    for name in (*data.TRAIN_BATCHES, data.TEST_BATCH):
        try:
            h.update(f"{name}:{file_digest(folder / name, memo)}".encode())
        except FileNotFoundError as exc:
            raise data.DataError(f"missing data file {exc.filename}") from None
    if json.dumps(memo, sort_keys=True) != before:  # a file was hashed: remember it
        with contextlib.suppress(OSError):  # a read-only data folder just hashes every time
            cache.mkdir(exist_ok=True)
            _write_atomic(memo_path, json.dumps(memo))
    return h.hexdigest()[:16]


def prepare(split: str, data_dir: str | Path | None, dtype: str = "float32") -> Cached:
    """Make sure the normalised split is cached and intact; return where it is."""
    root = ensure_data(data_dir)
    if split not in data.SPLITS:
        data.load_split(split, root)  # raises the usual "unknown split" error
    name = f"{split}-{dtype}-{fingerprint(root, split, dtype)}"
    made = root / CACHE / name  # one made here before (by whoever could write here)
    if made.is_dir() and damage(made) is None:
        return Cached(made, name, root.resolve())
    folder = cache_dir(root) / name
    notes = []
    if folder.exists():
        problem = damage(folder)
        if problem is None:
            return Cached(folder, folder.name, root.resolve())
        notes.append(f"the cached copy {folder} was damaged ({problem}); rebuilt it")
        _discard(folder)
    try:
        staging = _staging(folder)
    except Unwritable:
        # The folder looked writable and is not (a Windows ACL, which os.access does not
        # read): the per-user cache, as for a folder seen to be read-only.
        if folder.parent != root / CACHE:
            raise
        folder = user_cache_dir() / "splits" / name
        if damage(folder) is None:
            return Cached(folder, name, root.resolve(), notes)
        staging = _staging(folder)
    try:
        _build(data.load_split(split, root, dtype), staging, folder, dtype)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # bad batches: no staging folder left
    return Cached(folder, folder.name, root.resolve(), notes)


def cache_dir(root: Path) -> Path:
    """Where new copies of the data in ``root`` are made: ``root/.lambda-sweep-cache``, or,
    when that cannot be written (a read-only or shared data folder, another user's), the
    per-user cache folder's ``splits/``. Copies are named by their content's fingerprint,
    so copies of several data folders share that one safely; every process of a sweep on
    this machine makes the same choice."""
    own = root / CACHE
    with contextlib.suppress(OSError):
        own.mkdir(exist_ok=True)
    if own.is_dir() and os.access(own, os.W_OK | os.X_OK):
        return own
    return user_cache_dir() / "splits"


def _staging(folder: Path) -> Path:
    """A new staging folder beside ``folder``, where its copy is written first."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent))
    except OSError as exc:
        raise Unwritable(
            f"cannot write the normalised copy of the data into {folder.parent} "
            f"({exc.strerror or exc}); make it writable, or set XDG_CACHE_HOME to a "
            "folder that is"
        ) from None


def _build(s: data.Split, staging: Path, folder: Path, dtype: str) -> None:
    """Write the split into ``staging`` and rename it to ``folder`` when complete."""
    need = sum(getattr(s, name).nbytes for name in ARRAYS)
    if shutil.disk_usage(staging).free < need:
        raise _no_space(folder, need)
    sizes = {}
    for name in ARRAYS:
        path = staging / f"{name}.npy"
        try:
            np.save(path, getattr(s, name))
        except OSError as exc:  # numpy's own "Not enough free space" has no errno
            if disk_full(exc):
                raise _no_space(folder, need) from None
            raise
        sizes[name] = path.stat().st_size
    meta = {
        "split": s.name,
        "dtype": dtype,
        "fingerprint": folder.name,
        "validation": s.validation,
        "sizes": s.sizes,
        "bytes": sizes,
    }
    (staging / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    data.as_created(staging)
    with contextlib.suppress(OSError):  # another process may have cached it first
        os.replace(staging, folder)


def _no_space(folder: Path, need: int) -> data.DataError:
    return data.DataError(
        f"no space left in {folder.parent} for the normalised copy of the data "
        f"({need / 1e9:.2f} GB); free some space there and rerun"
    )


def damage(folder: Path) -> str | None:
    """What is wrong with a cached copy (missing, truncated or unreadable files), or None."""
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        expected = meta["bytes"]
    except (OSError, ValueError, KeyError, TypeError):
        return "meta.json is missing or unreadable"
    for name in ARRAYS:
        path = folder / f"{name}.npy"
        try:
            size = path.stat().st_size
        except OSError:
            return f"{path.name} is missing"
        if size != expected.get(name):
            return f"{path.name} has {size} bytes, expected {expected.get(name)}"
        try:
            np.load(path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            return f"{path.name} is unreadable ({exc})"
    return None


def _discard(folder: Path) -> None:
    """Move a damaged copy aside before deleting it, so no reader sees it half-deleted."""
    trash = Path(tempfile.mkdtemp(prefix=".old-", dir=folder.parent))
    with contextlib.suppress(OSError):
        os.replace(folder, trash / folder.name)
    shutil.rmtree(trash, ignore_errors=True)


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    data.as_created(Path(tmp))
    os.replace(tmp, path)


def load(split: str, data_dir: str | Path | None, dtype: str = "float32") -> data.Split:
    """The split's cached copy (made first if needed), memory-mapped read-only."""
    return open_split(prepare(split, data_dir, dtype).folder)


def open_split(folder: Path) -> data.Split:
    """The cached split, memory-mapped read-only."""
    problem = damage(folder)
    if problem is not None:
        raise data.DataError(
            f"the cached copy {folder} is damaged ({problem}); rerun `sweep run` or "
            "`sweep resume` on this machine to rebuild it"
        )
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in ARRAYS}
    return data.Split(name=meta["split"], validation=meta["validation"], **arrays)
