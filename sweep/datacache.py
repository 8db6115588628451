"""One normalised copy of a split on disk, memory-mapped by every worker.

The orchestrator loads and normalises a split once and saves it as .npy files next to the
data; workers open them with mmap_mode="r", so the operating system's page cache holds the
data once for all workers instead of once per process.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core import data
from sweep.data import ensure_data

ARRAYS = ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test", "mean", "std")


@dataclass(frozen=True)
class Cached:
    folder: Path
    fingerprint: str


def fingerprint(root: Path, split: str, dtype: str) -> str:
    """Changes when any batch file changes (name, size, modification time)."""
    h = hashlib.sha1(f"{split}:{dtype}".encode())
    folder = root / data.FOLDER
    for name in (*data.TRAIN_BATCHES, data.TEST_BATCH):
        st = (folder / name).stat()
        h.update(f"{name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def prepare(split: str, data_dir: str | Path | None, dtype: str = "float32") -> Cached:
    """Make sure the normalised split is cached; return where it is."""
    root = ensure_data(data_dir)
    if split not in data.SPLITS:
        data.load_split(split, root)  # raises the usual "unknown split" error
    try:
        key = fingerprint(root, split, dtype)
    except FileNotFoundError as exc:
        raise data.DataError(f"missing data file {exc.filename}") from None
    cache = root / ".lambda-sweep-cache"
    folder = cache / f"{split}-{dtype}-{key}"
    if (folder / "meta.json").is_file():
        return Cached(folder, key)
    s = data.load_split(split, root, dtype)
    cache.mkdir(exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=cache))
    try:
        for name in ARRAYS:
            np.save(staging / f"{name}.npy", getattr(s, name))
        meta = {
            "split": split,
            "dtype": dtype,
            "fingerprint": key,
            "validation": s.validation,
            "sizes": s.sizes,
        }
        (staging / "meta.json").write_text(json.dumps(meta))
        with contextlib.suppress(OSError):  # another process may have cached it first
            os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Cached(folder, key)


def open_split(folder: Path) -> data.Split:
    """The cached split, memory-mapped read-only."""
    meta = json.loads((folder / "meta.json").read_text())
    arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in ARRAYS}
    return data.Split(name=meta["split"], validation=meta["validation"], **arrays)
