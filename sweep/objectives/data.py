"""Find (or download) CIFAR-10 for the built-in objective and `sweep train`, with a progress
bar on a terminal.

Where: ``--data-dir``, else ``$SWEEP_DATA_DIR``, else the per-user cache folder (see
default_root). core.data only takes a folder; where a user's data lives is decided here.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from core import data
from sweep.system.portable import home, user_cache_dir


def resolve_root(data_dir: str | Path | None) -> Path:
    """``--data-dir``, else ``$SWEEP_DATA_DIR``, else the per-user cache directory."""
    return Path(data_dir).expanduser() if data_dir else default_root()


def default_root() -> Path:
    """``$SWEEP_DATA_DIR``, else the per-user cache folder of this system
    (sweep.system.portable.user_cache_dir), else the old ~/.cache/lambda-sweep when only that one
    holds the data (macOS and Windows users of version 0.2 keep their download)."""
    if env := os.environ.get("SWEEP_DATA_DIR"):
        return Path(env)
    cache = user_cache_dir()
    old = old_cache_dir()
    if not (cache / data.FOLDER).is_dir() and (old / data.FOLDER).is_dir():
        return old
    return cache


def old_cache_dir() -> Path:
    """Where versions up to 0.2 kept the data on every system (on Linux the same folder)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or home() / ".cache") / "lambda-sweep"


def ensure_data(data_dir: str | Path | None) -> Path:
    """The data root holding ``cifar-10-batches-py/``, downloading the archive if needed.

    ``$SWEEP_CIFAR_URL`` (and ``$SWEEP_CIFAR_MD5``) point the download at a mirror.
    """
    root = resolve_root(data_dir)
    url = os.environ.get("SWEEP_CIFAR_URL") or data.URL  # (set to nothing: the default)
    md5 = os.environ.get("SWEEP_CIFAR_MD5") or data.MD5
    if (root / data.FOLDER).is_dir():
        return root
    named = "--data-dir" if data_dir is not None else "$SWEEP_DATA_DIR"
    if (data_dir is not None or os.environ.get("SWEEP_DATA_DIR")) and not root.is_dir():
        # A mistyped folder must not become a new folder and a 170 MB download.
        raise data.DataError(
            f"{named} {root} does not exist (CIFAR-10 was looked for in "
            f"{root / data.FOLDER}); pass the folder that holds cifar-10-batches-py/, or "
            "create the folder first to download CIFAR-10 into it"
        )
    # A warning of the "sweep" logger: the command prints it, library use stays quiet.
    archive = root / data.ARCHIVE  # (one put there by hand is extracted, not downloaded)
    doing = f"extracting {archive}" if archive.is_file() else f"downloading {url}"
    logging.getLogger(__name__).warning(f"CIFAR-10 not found in {root}; {doing}")
    bar = _ProgressBar()
    try:
        data.ensure(root, url=url, md5=md5, progress=bar)
    finally:
        bar.close()
    return root


def load_split(split: str, data_dir: str | Path | None, dtype: str = "float32") -> data.Split:
    return data.load_split(split, ensure_data(data_dir), dtype)


class _ProgressBar:
    """tqdm on a terminal; nothing otherwise (logs stay clean)."""

    def __init__(self) -> None:
        self._bar = None

    def __call__(self, done: int, total: int | None) -> None:
        if not sys.stderr.isatty():
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, unit="B", unit_scale=True, desc="cifar-10", file=sys.stderr
            )
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
