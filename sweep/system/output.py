"""Files written for people (tables, figures, reports): each appears whole or not at all.

Every file goes to a temporary file in its own folder first and is renamed into place, so
a kill or a full disk never leaves a half-written table or an empty PNG (a reader sees
the old file or the new one). Text is UTF-8 whatever the locale.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import math
import os
import re
import sys
import tempfile
import unicodedata
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import tabulate

from core.data import as_created
from sweep.errors import SweepError


def check_out(out: str | Path) -> None:
    """Refuse an ``--out`` that cannot become a folder, before any work is done."""
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise SweepError(f"--out {folder} is a file, not a folder; pass another --out")
    existing = next((p for p in (folder, *folder.absolute().parents) if p.exists()), None)
    if existing is not None and not (existing.is_dir() and _can_write_in(existing)):
        raise SweepError(f"cannot create --out {folder}: {existing} is not a writable folder")


def check_file(path: str | Path | None, option: str) -> None:
    """Refuse a file option (``--plot``, ``--save-model``) that cannot be written, before any
    work: an existing folder or device (a write would replace it), or a place where no file
    can be created. None (the option not given) passes."""
    if path is None:
        return
    target = Path(os.path.realpath(path))
    if target.exists() and not target.is_file():
        raise SweepError(f"{option} {path} is not a regular file; pass a file's path")
    existing = next((p for p in target.parents if p.exists()), None)
    if existing is not None and not (existing.is_dir() and _can_write_in(existing)):
        raise SweepError(f"cannot write {option} {path}: {existing} is not a writable folder")


MOVE_IT = "move it away or pass another --out"


def check_places(files: Iterable[Path], folders: Iterable[Path]) -> None:
    """Refuse, before anything is written, output places taken by the other kind: a folder
    where a file goes, a file where a folder goes (a report half written, then an error);
    and two places whose names differ only in case (one place on macOS and Windows)."""
    files, folders = list(files), list(folders)
    for path in files:
        if path.is_dir():
            raise SweepError(f"{path} is a folder, where a file goes; {MOVE_IT}")
    for path in folders:
        if path.exists() and not path.is_dir():
            raise SweepError(f"{path} is a file, where a folder goes; {MOVE_IT}")
    seen: dict[str, tuple[str, str]] = {}  # compared as text: Windows paths compare caseless
    for path, kind in [*((str(f), "file") for f in files), *((str(f), "folder") for f in folders)]:
        other, other_kind = seen.setdefault(path.casefold(), (path, kind))
        if other != path:
            raise SweepError(
                f"{Path(other).name!r} and {Path(path).name!r} differ only in case, one place "
                "on macOS and Windows; rename the study, or report it into another --out"
            )
        if other_kind != kind:
            raise SweepError(
                f"{path} would be both a file and a folder of the report; rename the study, "
                "or report it into another --out"
            )


def _can_write_in(folder: Path) -> bool:
    """Whether a file can be made in ``folder``: tried, since permission bits say nothing
    of a read-only mount or /proc."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".sweep-check-", dir=folder)
    except OSError:
        return False
    os.close(fd)
    os.unlink(tmp)
    return True


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
    """``write(tmp)`` writes the file's content to a temporary path; then it takes its place.
    Returns ``path`` as given."""
    path = Path(path)
    target = Path(os.path.realpath(path))  # through a link: the file it points to is replaced
    if target.exists() and not target.is_file():
        raise SweepError(f"{path} is not a regular file; it is left as it is")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=target.suffix, dir=target.parent
        )
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise
        raise SweepError(f"cannot write {path}: {exc.strerror}") from None
    os.close(fd)
    try:
        write(Path(tmp))
        as_created(Path(tmp))
        os.replace(tmp, target)
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
    if fmt not in fig.canvas.get_supported_filetypes():
        known = ", ".join(sorted(fig.canvas.get_supported_filetypes()))
        raise SweepError(f"cannot save a figure as .{fmt}; use one of: {known}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        written = write_with(path, lambda tmp: fig.savefig(tmp, format=fmt, **options))
    missing = []
    for w in caught:
        # matplotlib >= 3.7: "... missing from font(s) DejaVu Sans."; 3.6: "... current font."
        glyph = re.match(r"Glyph (\d+) .*missing from", str(w.message))
        if glyph:
            missing.append(chr(int(glyph.group(1))))
        elif (where := (w.category, str(w.message), w.filename, w.lineno)) not in _warned:
            # any other warning as if not caught: its module's filters, once per place (the
            # registry warn_explicit takes is cleared as catch_warnings changes the filters)
            _warned.add(where)
            warnings.warn_explicit(
                w.message, w.category, w.filename, w.lineno, _module_of(w.filename)
            )
    _say_missing_glyphs(missing)
    return written


_warned: set[tuple] = set()  # the other warnings save_figure passed on


def _module_of(filename: str) -> str | None:
    """The name of the loaded module of ``filename`` (what warning filters match)."""
    found = (n for n, m in list(sys.modules.items()) if getattr(m, "__file__", None) == filename)
    return next(found, None)


_said_missing: set[str] = set()  # characters said to be missing from the font already


def _say_missing_glyphs(chars: list[str]) -> None:
    """matplotlib warns of each character its font lacks, in two lines, at every figure
    that draws it (six figures of a report with a metric named in Chinese: 12 lines); the
    command says it once, in one line."""
    new = "".join(dict.fromkeys(c for c in chars if c not in _said_missing))
    if new:
        _said_missing.update(new)
        logging.getLogger("sweep").warning(
            f"the figures' font has no {new!r}: drawn as empty boxes (matplotlib's "
            "rcParams['font.family'] can name a font that has them)"
        )


def json_text(value: Any, **options: Any) -> str:
    """JSON for other programs: NaN and infinities (a failed trial's metric) as null, since
    JSON has none and strict parsers (JSON.parse, json.loads with parse_constant) refuse
    Python's bare NaN."""

    def finite(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: finite(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [finite(x) for x in v]
        return v

    return json.dumps(finite(value), allow_nan=False, **options)


def latex_escape(text: object) -> str:
    """Text as LaTeX reads it: tabulate's escaping of every special character, then the
    few symbols our tables use."""
    escaped = "".join(LATEX.get(c, tabulate.LATEX_ESCAPE_RULES.get(c, c)) for c in str(text))
    return escaped.replace("★", r"$\star$").replace("±", r"$\pm$").replace("–", "--")


def _greek() -> dict[str, str]:
    """Greek letters as LaTeX's math macros ("λ": "$\\lambda$"); capitals that look Latin
    and have no macro as those Latin letters."""
    latin = dict(zip("ΑΒΕΖΗΙΚΜΝΟΡΤΧ", "ABEZHIKMNOPTX", strict=True))
    out = {}
    for code in range(0x391, 0x3CA):
        letter, name = chr(code), unicodedata.name(chr(code), "")
        if not name.startswith("GREEK") or " WITH " in name:
            continue  # (unassigned, or accented: ά has no macro, a Unicode engine prints it)
        word = name.split()[-1].lower().replace("lamda", "lambda")  # Unicode's spelling
        if "FINAL" in name:
            out[letter] = r"$\varsigma$"
        elif "SMALL" in name:
            out[letter] = "o" if word == "omicron" else f"$\\{word}$"
        else:
            out[letter] = latin.get(letter) or f"$\\{word.capitalize()}$"
    return out


# What tabulate leaves that LaTeX's default fonts print as another character ("|" as an
# em dash) or refuse (pdflatex: "λ" and the other Greek letters are not set up for LaTeX).
LATEX = {"|": r"\textbar{}", "µ": r"$\mu$", **_greek()}  # (µ: the micro sign)


def file_stem(name: str, limit: int = 60) -> str:
    """A name (a searched parameter's, which the user chose) as a file name: letters,
    digits, "_", "-" and "." are kept, anything else (a "/", "..", a space) becomes "_",
    and a long one is cut; when anything changed, a short digest of the name keeps two
    names that would become alike apart. Never a path outside the folder it is put in."""
    safe = "".join(c if (c.isascii() and c.isalnum()) or c in "_-." else "_" for c in name)
    safe = safe.strip(".")[:limit]
    if safe == name:
        return name
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=4).hexdigest()
    return f"{safe}-{digest}" if safe else digest


def markdown_cell(text: object) -> str:
    """A Markdown table cell: a "|" in it would end the cell."""
    return str(text).replace("|", r"\|").replace("\n", " ")
