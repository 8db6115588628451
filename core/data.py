"""CIFAR-10 in the official "python version" layout: find, download, load, split, normalise.

The only module of the core that touches files or the network.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import http.client
import os
import pickle
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import ConfigError, DataError

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE = "cifar-10-python.tar.gz"
FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
DIM = 3072
CLASSES = 10

# Name -> (training batches, validation: a batch name or a number of held-out images).
# Held-out images are the last ones of the concatenated training batches, so the choice
# is deterministic and recorded as a range of source indices.
SPLITS: dict[str, tuple[tuple[str, ...], str | int]] = {
    "exercise": (("data_batch_1",), "data_batch_2"),
    "search": (TRAIN_BATCHES, 5000),
    "final": (TRAIN_BATCHES, 1000),
}

Progress = Callable[[int, int | None], None]  # (bytes so far, total bytes or None)


@dataclass(frozen=True)
class Split:
    """Normalised images (one per row) and integer labels of one split."""

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    mean: np.ndarray  # (d,) per-pixel mean of the training part
    std: np.ndarray  # (d,) per-pixel std of the training part
    validation: str  # where the validation images come from, e.g. "data_batch_5[5000:10000]"

    @property
    def sizes(self) -> dict[str, int]:
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}


class _BatchUnpickler(pickle.Unpickler):
    """CIFAR-10's batches hold dicts, lists, bytes and numpy arrays, nothing else: any
    other class is refused, so that a crafted file in a data folder cannot run code (a
    pickle runs what find_class gives it)."""

    ALLOWED = frozenset(
        {
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "_reconstruct"),  # numpy 1 (the official files)
            ("numpy._core.multiarray", "_reconstruct"),  # numpy 2
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("_codecs", "encode"),  # bytes written by Python 3 at protocol 2
        }
    )

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it holds a {module}.{name}, which no batch has")
        return super().find_class(module, name)


def load_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (n, 3072) and labels int64 (n,) from one official pickle file."""
    try:
        with open(path, "rb") as f:
            raw = _BatchUnpickler(f, encoding="bytes").load()
    except FileNotFoundError:
        raise DataError(f"missing data file {path}") from None
    except Exception as exc:
        raise DataError(
            f"{path} is not a CIFAR-10 batch ({type(exc).__name__}: {exc}); "
            "delete the folder and download it again"
        ) from None
    if not isinstance(raw, dict):
        raise DataError(f"{path} is not a CIFAR-10 batch (no dictionary inside)")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in raw.items()}
    if "data" not in batch or "labels" not in batch:
        raise DataError(f"{path} has no 'data' and 'labels' entries; is it a CIFAR-10 batch?")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch["labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != DIM:
        raise DataError(
            f"{path}: data must be uint8 of shape (n, {DIM}), got {data.dtype} {data.shape}"
        )
    if not len(data):
        raise DataError(f"{path} holds no images; delete the folder and download it again")
    if labels.shape != (len(data),) or labels.dtype.kind not in "iu":
        raise DataError(
            f"{path}: labels must be {len(data)} integers, one per image; got "
            f"{labels.dtype} of shape {labels.shape}"
        )
    labels = labels.astype(np.int64)
    if len(labels) and (labels.min() < 0 or labels.max() >= CLASSES):
        raise DataError(f"{path}: labels must lie in 0..{CLASSES - 1}")
    return data, labels


def load_split(name: str, root: Path, dtype: str | np.dtype = np.float32) -> Split:
    """Load a split from ``root/cifar-10-batches-py`` and normalise it with training statistics."""
    if name not in SPLITS:
        raise ConfigError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}")
    folder = Path(root) / FOLDER
    if not folder.is_dir():
        raise DataError(f"no CIFAR-10 data in {root} (expected the folder {folder})")
    train_names, validation = SPLITS[name]
    parts = [load_batch(folder / b) for b in train_names]
    X = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    if isinstance(validation, str):
        X_val, y_val = load_batch(folder / validation)
        where = validation
    else:
        if validation >= len(y):
            raise DataError(
                f"split {name!r} holds out {validation} images but the training "
                f"batches have only {len(y)}"
            )
        X, X_val = X[:-validation], X[-validation:]
        y, y_val = y[:-validation], y[-validation:]
        where = f"last {validation} of {'+'.join(train_names)}"
    X_test, y_test = load_batch(folder / TEST_BATCH)
    mean, std = statistics(X)
    return Split(
        name=name,
        X_train=normalise(X, mean, std, dtype),
        y_train=y,
        X_val=normalise(X_val, mean, std, dtype),
        y_val=y_val,
        X_test=normalise(X_test, mean, std, dtype),
        y_test=y_test,
        mean=mean,
        std=std,
        validation=where,
    )


def statistics(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel mean and std (float64) of uint8 images; a constant pixel gets std 1."""
    mean = X.mean(axis=0, dtype=np.float64)
    sq = np.einsum("ij,ij->j", X, X, dtype=np.float64) / len(X)
    std = np.sqrt(np.maximum(sq - mean**2, 0.0))
    std[std == 0] = 1.0
    return mean, std


def normalise(X: np.ndarray, mean: np.ndarray, std: np.ndarray, dtype) -> np.ndarray:
    """(X - mean) / std in ``dtype``, computed in blocks to keep memory to one copy."""
    dtype = np.dtype(dtype)
    out = np.empty(X.shape, dtype=dtype)
    m, inv = mean.astype(dtype), (1.0 / std).astype(dtype)
    for start in range(0, len(X), 4096):
        block = out[start : start + 4096]
        np.subtract(X[start : start + 4096], m, out=block, dtype=dtype)
        block *= inv
    return out


# --- download -------------------------------------------------------------------------


def ensure(
    root: Path,
    *,
    url: str = URL,
    md5: str = MD5,
    progress: Progress | None = None,
    timeout: float = 30.0,
) -> Path:
    """Return ``root/cifar-10-batches-py``, downloading and extracting it first if missing.

    The archive is verified against ``md5`` and extracted into a temporary folder that is
    renamed into place only when complete, so a failure never leaves a half-written folder.
    An archive already at ``root/cifar-10-python.tar.gz`` is used instead of downloading.
    """
    root = Path(root)
    folder = root / FOLDER
    if folder.is_dir():
        return folder
    if folder.exists():  # (the download would have been for nothing)
        raise DataError(f"{folder} is a file, not the CIFAR-10 folder; move it away and run again")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the data folder {root}: {exc.strerror}") from None
    archive = root / ARCHIVE
    if archive.is_file():
        if _md5(archive) != md5.lower():
            raise DataError(
                f"{archive} has the wrong md5 checksum (expected {md5}); "
                "delete it and run again to download a fresh copy"
            )
    else:
        _download(url, archive, md5, progress, timeout)
    _extract(archive, root)
    return folder


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def as_created(path: Path) -> None:
    """Give a file or folder made by tempfile (private: mode 0600 or 0700) the mode that
    open() or mkdir() would have given it (0666 or 0777 less the umask), before it is
    renamed into place: others read a shared data folder or a report as any other file."""
    mask = os.umask(0o022)  # the only portable way to read it: set it and put it back
    os.umask(mask)
    os.chmod(path, (0o777 if Path(path).is_dir() else 0o666) & ~mask)


def _download(url: str, archive: Path, md5: str, progress: Progress | None, timeout: float) -> None:
    by_hand = (
        f"download {url} by hand and put it at {archive} "
        f"(or pass --data-dir pointing at a folder holding {FOLDER}/)"
    )
    _remove_stale(archive.parent, ".download-")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=".download-", dir=archive.parent)
    except OSError as exc:
        raise _cannot_write(archive.parent, exc) from None
    tmp = Path(tmp_name)
    try:
        h = hashlib.md5()
        with (
            os.fdopen(fd, "wb") as out,
            urllib.request.urlopen(url, timeout=timeout) as response,
        ):
            length = response.headers.get("Content-Length")
            total = int(length) if length else None
            done = 0
            # 64 KB at a time: the progress bar moves every second even at 64 KB/s.
            for chunk in iter(lambda: response.read(1 << 16), b""):
                out.write(chunk)
                h.update(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
        if h.hexdigest() != md5.lower():
            raise DataError(
                f"the download from {url} has the wrong md5 checksum "
                f"({h.hexdigest()}, expected {md5}); try again or {by_hand}"
            )
        as_created(tmp)
        os.replace(tmp, archive)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        if isinstance(exc, http.client.InvalidURL):  # (no server was asked)
            reason = f"not a valid URL: {exc}"
        elif isinstance(exc, http.client.IncompleteRead):
            reason = "the connection closed before the end of the file"
        elif isinstance(exc, http.client.HTTPException):
            reason = f"the server's reply is not valid HTTP: {type(exc).__name__}"
        raise DataError(f"cannot download CIFAR-10 from {url} ({reason}); {by_hand}") from None
    finally:
        tmp.unlink(missing_ok=True)


# A partial download or extraction that nothing has written to for this long was left by
# a process that was killed (kill -9, a power cut): the next download removes it. A live
# one writes every second or so.
STALE_SECONDS = 3600


def _remove_stale(folder: Path, prefix: str) -> None:
    now = time.time()
    for path in folder.glob(f"{prefix}*"):
        with contextlib.suppress(OSError):
            if now - path.stat().st_mtime > STALE_SECONDS:
                shutil.rmtree(path) if path.is_dir() else path.unlink()


def _cannot_write(folder: Path, exc: OSError) -> DataError:
    return DataError(
        f"cannot write CIFAR-10 into {folder} ({exc.strerror or exc}); make the folder "
        "writable or pass --data-dir with a writable folder"
    )


def _extract(archive: Path, root: Path) -> None:
    _remove_stale(root, ".extract-")
    try:
        staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=root))
    except OSError as exc:
        raise _cannot_write(root, exc) from None
    try:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                extract_safely(tar, staging)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise DataError(f"cannot extract {archive} ({exc}); delete it and run again") from None
        if not (staging / FOLDER).is_dir():
            raise DataError(f"{archive} does not contain {FOLDER}/; is it the CIFAR-10 archive?")
        # tarfile stops without a word at a damaged header: an archive whose checksum was
        # right for a damaged or partial copy (a mirror's own SWEEP_CIFAR_MD5) must not
        # put an incomplete folder in place, where every later run would fail on it.
        missing = [
            name for name in (*TRAIN_BATCHES, TEST_BATCH) if not (staging / FOLDER / name).is_file()
        ]
        if missing:
            raise DataError(
                f"{archive} lacks {FOLDER}/{missing[0]} (damaged or incomplete); "
                "delete it and run again"
            )
        try:
            os.replace(staging / FOLDER, root / FOLDER)
        except OSError as exc:
            # Another command extracted the same archive at the same time and renamed its
            # copy first (a folder cannot replace a non-empty one): use that one.
            if not (root / FOLDER).is_dir():
                raise _cannot_write(root, exc) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def extract_safely(tar: tarfile.TarFile, dest: Path) -> None:
    """Extract ``tar`` into ``dest`` with nothing written outside it.

    Python 3.11.4+ (and 3.12+) do it with tarfile's "data" filter. Older ones (Debian 12
    ships 3.11.2) have no ``filter`` argument and raise TypeError: then every member is
    checked first, the way that filter checks it, and the archive is refused as a whole
    if one fails (tarfile.TarError, which _extract turns into a DataError).
    """
    try:
        tar.extractall(dest, filter="data")
    except TypeError as exc:
        if "filter" not in str(exc):
            raise
        tar.extractall(dest, members=checked_members(tar, dest))


def checked_members(tar: tarfile.TarFile, dest: Path) -> list[tarfile.TarInfo]:
    """The members of ``tar``, each refused (tarfile.TarError naming it) if it would land
    outside ``dest`` (an absolute name, ``..``, a link pointing outside) or is a device or
    FIFO; permissions lose set-id and group/other write bits, as the "data" filter does."""
    root = os.path.realpath(dest)

    def inside(path: str) -> bool:
        try:
            return os.path.commonpath([root, os.path.realpath(path)]) == root
        except ValueError:  # Windows: another drive
            return False

    members = []
    for member in tar.getmembers():
        name = member.name
        if os.path.isabs(name) or name.startswith(("/", "\\")) or ".." in Path(name).parts:
            raise tarfile.TarError(f"unsafe member {name!r} (absolute or with ..)")
        if not inside(os.path.join(root, name)):
            raise tarfile.TarError(f"member {name!r} would be written outside the folder")
        if member.isdev():  # character and block devices, FIFOs
            raise tarfile.TarError(f"member {name!r} is a device or FIFO")
        if member.issym() or member.islnk():
            target = member.linkname
            # A symlink's target is relative to its own folder, a hard link's to the root.
            base = os.path.dirname(os.path.join(root, name)) if member.issym() else root
            if os.path.isabs(target) or not inside(os.path.join(base, target)):
                raise tarfile.TarError(f"link {name!r} points outside the folder ({target!r})")
        member = copy.copy(member)
        if member.isreg() or member.isdir():
            member.mode = member.mode & 0o755
        if hasattr(os, "geteuid"):  # as root, tarfile would give files the archive's owner
            member.uid, member.gid, member.uname, member.gname = os.geteuid(), os.getegid(), "", ""
        members.append(member)
    return members
