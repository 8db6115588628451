"""Find (or download) CIFAR-10 for the CLI, with a progress bar on a terminal."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from core import data


def resolve_root(data_dir: str | Path | None) -> Path:
    """``--data-dir``, else ``$SWEEP_DATA_DIR``, else the per-user cache directory."""
    return Path(data_dir).expanduser() if data_dir else data.default_root()


def ensure_data(data_dir: str | Path | None) -> Path:
    """The data root holding ``cifar-10-batches-py/``, downloading the archive if needed.

    ``$SWEEP_CIFAR_URL`` (and ``$SWEEP_CIFAR_MD5``) point the download at a mirror.
    """
    root = resolve_root(data_dir)
    url = os.environ.get("SWEEP_CIFAR_URL", data.URL)
    md5 = os.environ.get("SWEEP_CIFAR_MD5", data.MD5)
    if (root / data.FOLDER).is_dir():
        return root
    print(f"CIFAR-10 not found in {root}; downloading {url}", file=sys.stderr)
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
