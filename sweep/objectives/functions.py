"""Find the function a study optimises: a file next to the study file, or a module.

Loaded once per process and version of the file (workers reuse it for every trial; a file
edited between two runs of one session is loaded again). Every failure is a one-line
StudyFileError naming what is missing and what to do, so `sweep run` and `sweep worker`
refuse before anything is written.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import importlib.util
import os
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sweep.errors import StudyFileError
from sweep.spec.studyfile import DEFAULT_PACK, ObjectiveSection, StudyFile
from sweep.system import signals

Function = Callable[..., Any]


class ProcessExit(SystemExit):
    """The function called os._exit: its trial fails, the worker process lives on (or, at
    the import of its file, the command refuses the study file)."""


@contextlib.contextmanager
def exit_guard() -> Iterator[None]:
    """While the user's code runs, os._exit in this thread raises ProcessExit instead of
    ending the process (a worker with its trial unfinished; the command or a notebook at
    the file's import). Other threads keep the real one, and so do processes the code
    forks (multiprocessing, a DataLoader's workers): they end with os._exit."""
    real, caller, pid = os._exit, threading.get_ident(), os.getpid()

    def guarded(code: int) -> None:
        if threading.get_ident() != caller or os.getpid() != pid:
            real(code)
        raise ProcessExit(code)

    os._exit = guarded
    try:
        yield
    finally:
        os._exit = real


def objective_path(section: ObjectiveSection, objective_dir: str | None = None) -> Path:
    """Where a file objective is: relative to --objective-dir, else the study file's folder."""
    assert section.file is not None
    return Path(objective_dir or section.folder) / section.file


def dumps(function: Function) -> bytes:
    """A function given in memory, as bytes a worker process can load: by value
    (cloudpickle), so that one defined in a notebook cell, a lambda or a closure travels
    with what it refers to. A function of an importable module travels by reference, and
    the worker imports that module."""
    import cloudpickle

    if not callable(function):
        raise StudyFileError(
            f"objective= must be a function f(params, ctx), not {type(function).__name__}"
        )
    try:
        return cloudpickle.dumps(function)
    except Exception as exc:
        raise StudyFileError(
            f"the objective {_name_of(function)} cannot be sent to worker processes "
            f"({type(exc).__name__}: {exc})".splitlines()[0]
            + "; keep what it uses picklable (open files, locks and connections are not)"
        ) from None


@functools.cache
def loads(payload: bytes) -> Function:
    """The function of `dumps`, once per process."""
    import cloudpickle

    return cloudpickle.loads(payload)


def given_name(function: Function) -> str:
    """The name a function given in memory is stored and shown under."""
    return _name_of(function)


def _name_of(function: Any) -> str:
    return str(getattr(function, "__name__", None) or type(function).__name__)


def in_memory_error(name: str | None, section: ObjectiveSection) -> StudyFileError:
    """Why a study of a function given in memory cannot run here: no file holds it."""
    given = section.in_memory or ""
    shown = given if given.isidentifier() else "your_function"
    study, call = (f"study {name!r}", repr(name)) if name else ("the study", "NAME")
    return StudyFileError(
        f"{study} optimises {given}, a function given in memory (from a notebook or a "
        "script) that no file or module holds, so it cannot be loaded here; pass it again "
        f"from Python: sweep.resume({call}, objective={shown}) or "
        f"sweep.worker({call}, objective={shown})"
    )


def load_function(section: ObjectiveSection, objective_dir: str | None = None) -> Function:
    """The study's function, ``function(params, ctx)``."""
    if section.in_memory:
        raise in_memory_error(None, section)  # runner.py names the study before this
    module = _module(section, objective_dir)
    return _attribute(module, section.function, section.module or module.__file__)


def load_many(section: ObjectiveSection, objective_dir: str | None = None) -> Function | None:
    """The function's list form, ``<function>_many(params_list, ctx) -> list``, if its file
    or module defines one: packed trials (README "Packed trials") need it. A function
    given in memory has none."""
    if section.in_memory:
        return None
    found = getattr(_module(section, objective_dir), section.function + "_many", None)
    return found if callable(found) else None


def pack_size(section: ObjectiveSection, pack: int | None, objective_dir: str | None = None) -> int:
    """How many trials a worker trains together: [study] pack, or DEFAULT_PACK when the
    function has a list form. A pack asked for without a list form is an error."""
    if load_many(section, objective_dir) is not None:
        return DEFAULT_PACK if pack is None else pack
    if pack is not None and pack > 1:
        raise StudyFileError(
            f"[study] pack = {pack} needs a list form of the function: define "
            f"{section.function}_many(params_list, ctx) -> list beside {section.function} "
            "in " + (section.file or section.module or "a file") + ", or set pack = 1"
        )
    return 1


def _module(section: ObjectiveSection, objective_dir: str | None) -> Any:
    if section.file is not None:
        if objective_dir and not Path(objective_dir).is_dir():
            raise StudyFileError(
                f"--objective-dir {objective_dir} is not a folder; name the folder that "
                f"holds {section.file}"
            )
        path = objective_path(section, objective_dir).resolve()
        if path.is_dir():
            raise StudyFileError(
                f"objective file {path} is a folder; [objective] file names the .py file "
                "that holds the function"
            )
        if not path.is_file():  # checked on every call: only the import is cached
            raise StudyFileError(
                f"objective file {path} does not exist; copy it there, or pass "
                "--objective-dir DIR naming the folder that holds it"
            )
        # Keyed by the source: an edited file is imported again (a notebook's next run).
        return _from_file(str(path), path.read_bytes())
    assert section.module is not None
    return _from_module(section.module)


@functools.cache
def _from_file(path: str, source: bytes) -> Any:
    # A unique module name per path: two studies' objective.py files never collide.
    # Compiled from ``source``, not through the import system's __pycache__, whose check
    # (whole seconds and size) misses an edit of the same length within a second.
    name = "sweep_objective_" + hashlib.sha1(os.fsencode(path)).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # so that pickling and dataclasses inside it work
    try:
        code = compile(source, path, "exec", dont_inherit=True)
        with contextlib.redirect_stdout(sys.stderr), exit_guard():  # stdout: the command's
            exec(code, module.__dict__)
    except BaseException as exc:  # sys.exit() at import too: a study file error, not an exit
        del sys.modules[name]
        if isinstance(exc, KeyboardInterrupt) and signals.STOP.is_set():
            raise
        line = _line_in(exc, path)
        what = (
            f"called os._exit({exc.code})"
            if isinstance(exc, ProcessExit)
            else (f"raised {type(exc).__name__}")
        )
        raise StudyFileError(
            f"objective file {path} {what} at import"
            + (f" (line {line})" if line else "")
            + ("" if isinstance(exc, ProcessExit) else f": {exc}".splitlines()[0])
            + _beside(exc, path)
        ) from None
    return module


def _beside(exc: BaseException, path: str) -> str:
    """For a module that sits beside the objective file but is not found: what to do. Its
    folder is not put on the path by the tool: in one session, two studies' folders with a
    helpers.py each would share the first one imported, without a word."""
    missing = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
    folder = os.path.dirname(path)
    top = (missing or "").split(".")[0]
    if not top or not (
        os.path.exists(os.path.join(folder, f"{top}.py"))
        or os.path.isdir(os.path.join(folder, top))
    ):
        return ""
    return f"; {top} beside it is imported from PYTHONPATH: add {folder} to it"


@functools.cache
def _from_module(module_name: str) -> Any:
    try:
        with contextlib.redirect_stdout(sys.stderr), exit_guard():  # stdout: the command's
            module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise StudyFileError(
            f"objective module {module_name!r} cannot be imported ({exc}); install it on this "
            "machine (pip install ...) or put it on PYTHONPATH"
        ) from None
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt) and signals.STOP.is_set():
            raise
        message = f"objective module {module_name} raised {type(exc).__name__} at import: {exc}"
        raise StudyFileError(message.splitlines()[0]) from None
    return module


def _attribute(module: Any, function: str, where: str) -> Function:
    found = getattr(module, function, None)
    if not callable(found):
        names = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        raise StudyFileError(
            f"{where} has no function {function!r}; set [objective] function to one of: "
            f"{', '.join(names) or 'none defined'}"
        )
    return found


def _line_in(exc: BaseException, path: str) -> int | None:
    """The line of ``path`` where an import-time exception was raised (or a syntax error)."""
    if isinstance(exc, SyntaxError) and exc.filename == path:
        return exc.lineno
    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename == path]
    return lines[-1] if lines else None


def check_given(name: str, section: ObjectiveSection, function: Any) -> None:
    """A function given in memory (``objective=``): there if the study's lives in memory,
    not if a file or module holds it, callable, and under the study's function's name (a
    resume or a worker ran another function's values into the study)."""
    if function is None:
        if section.in_memory:
            raise in_memory_error(name, section)
        return
    if not callable(function):
        raise StudyFileError(f"objective ({function!r}) must be a function f(params, ctx)")
    if not section.in_memory:
        raise StudyFileError(
            f"study {name!r} optimises {section.source}, named in its [objective] section; "
            "objective= is for a study whose function is given in memory"
        )
    if given_name(function) != section.in_memory:
        raise StudyFileError(
            f"study {name!r} optimises {section.in_memory}, given in memory; "
            f"{given_name(function)} is another function: pass {section.in_memory} again "
            "(or run the other one as a study of its own name)"
        )


def check_function(
    spec: StudyFile, function: Callable[..., Any] | None, objective_dir: str | None
) -> bytes | None:
    """Check that the study's function can be had, before anything is written; returns a
    function given in memory as the bytes its workers load (None: they load the study's)."""
    name, section = spec.study.name, spec.objective
    check_given(name, section, function)
    if function is None:
        load_function(section, objective_dir)  # says what to copy or install, if missing
    pack_size(section, spec.study.pack, objective_dir)  # a pack it cannot do fails too
    return None if function is None else dumps(function)
