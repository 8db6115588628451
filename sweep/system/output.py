"""Files written for people (tables, figures, reports): each appears whole or not at all.

Every file goes to a temporary file in its own folder first and is renamed into place, so
a kill or a full disk never leaves a half-written table or an empty PNG (a reader sees
the old file or the new one). Text is UTF-8 whatever the locale.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import tabulate

from core.data import as_created
from sweep.errors import SweepError


def check_out(out: str | Path) -> None:
    """Refuse an ``--out`` that cannot become a folder, before any work is done."""
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise SweepError(f"--out {folder} is a file, not a folder; pass another --out")
    existing = next((p for p in (folder, *folder.absolute().parents) if p.exists()), None)
    if existing is not None and not (existing.is_dir() and os.access(existing, os.W_OK)):
        raise SweepError(f"cannot create --out {folder}: {existing} is not a writable folder")


def out_folder(out: str | Path) -> Path:
    """``--out`` as a folder that exists (created if need be), checked before any work."""
    check_out(out)
    folder = Path(out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SweepError(f"cannot create the folder --out {folder}: {exc.strerror}") from None
    if not os.access(folder, os.W_OK):
        raise SweepError(f"cannot write into --out {folder}; check its permissions")
    return folder


def write_with(path: str | Path, write: Callable[[Path], None]) -> Path:
    """``write(tmp)`` writes the file's content to a temporary path; then it takes its place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        as_created(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def save_text(path: str | Path, text: str) -> Path:
    return write_with(path, lambda tmp: tmp.write_text(text, encoding="utf-8", newline="\n"))


def save_figure(fig, path: str | Path, **options) -> Path:
    """A matplotlib Figure saved as ``path`` (its format from the suffix)."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    return write_with(path, lambda tmp: fig.savefig(tmp, format=fmt, **options))


def latex_escape(text: object) -> str:
    """Text as LaTeX reads it: tabulate's escaping of every special character, then the
    few symbols our tables use."""
    escaped = "".join(tabulate.LATEX_ESCAPE_RULES.get(c, c) for c in str(text))
    return escaped.replace("★", r"$\star$").replace("±", r"$\pm$").replace("–", "--")


def markdown_cell(text: object) -> str:
    """A Markdown table cell: a "|" in it would end the cell."""
    return str(text).replace("|", r"\|").replace("\n", " ")
