"""Optuna's journal file storage, ``journal:///PATH``: studies on a shared file system (NFS,
Lustre) with no database server (README, "A study on a shared file system, no server").
What it lacks next to the RDB storages is made up for here, in one place:

- the study lock (storage.StudyLock) must hold across machines, where a flock does not
  (NFS): `NfsLock`, a symlink created beside the journal (creating one is atomic on NFS,
  the rule Optuna's own JournalFileSymlinkLock relies on), naming its holder;
- the journal has no heartbeat (Optuna 5.0: no record_heartbeat, no fail_stale_trials), so
  a dead worker's trial would stay RUNNING forever: the worker's Heartbeat thread writes
  the time into the trial's "heartbeat" user attribute instead (`record_heartbeat`), and
  recovery treats a RUNNING trial whose last beat is older than the grace period as gone
  (`stale`), exactly as Optuna does for a stale RDB heartbeat. Times are each machine's
  own clock, so the machines' clocks must agree to well within the grace period (NTP).

The URL's path follows sqlite:///'s rule: after the three slashes, relative to the current
folder unless it starts with a fourth (``journal:////shared/sweeps.journal``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
import zlib
from pathlib import Path
from typing import Any

from optuna.storages import BaseStorage, JournalStorage
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock
from optuna.trial import FrozenTrial

from sweep.errors import NoDatabase, NotWritable, StorageError
from sweep.store import records
from sweep.store.template import SQLITE_HEADER
from sweep.system.portable import pid_alive

SCHEME = "journal"
HEARTBEAT_ATTR = records.HEARTBEAT  # a trial's last beat (epoch seconds), journal storages only
# A lock whose holder (on another machine) has not refreshed it for this long, while a
# waiter watched it, belongs to a dead process and is broken. Generous: NFS clients cache
# file attributes for up to a minute, so a refresh can take that long to be seen.
LOCK_STALE_SECONDS = float(os.environ.get("SWEEP_LOCK_STALE_SECONDS", "120"))
LOCK_REFRESH_SECONDS = min(10.0, LOCK_STALE_SECONDS / 4)
POLL_SECONDS = 0.05  # the longest wait between two tries of a held lock

log = logging.getLogger(__name__)


def is_journal(url: str) -> bool:
    return url.startswith(f"{SCHEME}:")


def path_of(url: str) -> Path:
    return Path(url.split(":///", 1)[1])


def validate(url: str, *, create: bool, write: bool | None = None) -> str:
    """Check a journal URL without opening it; the URL to open. ``write`` (default:
    ``create``): the caller will append to it, so it must be writable."""
    rest = url.split(":///", 1)[1] if ":///" in url else ""
    how = "use journal:///PATH (relative) or journal:////ABSOLUTE/PATH"
    if "?" in rest:
        raise StorageError(f"storage URL {url!r} has options; a journal takes none: {how}")
    if not rest or rest.endswith("/"):
        raise StorageError(f"storage URL {url!r} names no file; {how}")
    path = Path(rest)
    if path.is_dir():
        raise StorageError(f"{path} is a folder, not a journal file; pass another --storage")
    if path.exists():
        try:
            with open(path, "rb") as f:
                head = f.read(16)
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror}") from None
        if head == SQLITE_HEADER:
            raise StorageError(f"{path} is a SQLite database: use sqlite:///{rest}")
        if head and not head.startswith(b"{"):
            raise StorageError(f"{path} is not an Optuna journal file; pass another --storage")
    elif not create:
        raise NoDatabase(
            f"no study database at {path}; run `sweep run STUDY_FILE` first or pass --storage"
        )
    if create if write is None else write:
        _check_writable(path)
    return url


def _check_writable(path: Path) -> None:
    # Locks are files created beside the journal: its folder must be writable.
    folder = path.parent
    if not (folder.is_dir() and os.access(folder, os.W_OK)):
        raise NotWritable(
            f"cannot write the journal {path}: the folder {folder} does not exist or is not "
            "writable; pass another --storage"
        )
    if path.exists() and not os.access(path, os.W_OK):
        raise NotWritable(f"{path} is not writable; check its permissions")


def open_journal(url: str, *, read_only: bool) -> JournalStorage:
    """The JournalStorage of a checked URL (see `validate`); it writes its own locks."""
    path = path_of(url)
    if not read_only:
        _check_writable(path)
    try:
        return JournalStorage(WholeLines(str(path), JournalFileSymlinkLock(str(path))))
    except Exception as exc:  # a damaged file: one line, not a traceback
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StorageError(
            f"{path} is not a usable journal file ({first}); pass another --storage"
        ) from None


class WholeLines(JournalFileBackend):
    """Optuna's journal file, whose appends are whole or not at all.

    Optuna 5.0's append_logs writes a batch of lines with one buffered write. When the disk
    fills, part of a line stays at the end of the file; the next append is glued onto it,
    and from then on Optuna cannot read the journal at all ("Invalid log format": every
    finished trial lost; tests/store/test_journal.py pins it). Here a failed write cuts the
    file back to its length before the append, under the same lock, and raises. A torn last
    line that another writer left (killed mid-write, a power cut, a full disk under plain
    Optuna), which readers skip, is cut off before the next append rather than glued to it.
    """

    def __init__(self, path: str, lock: JournalFileSymlinkLock):
        super().__init__(path, lock_obj=lock)
        self._whole_path, self._whole_lock = path, lock

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        text = "\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n"
        self._whole_lock.acquire()
        try:
            flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0)  # Windows
            fd = os.open(self._whole_path, flags, 0o666)
            try:
                start = cut_torn_line(fd, os.fstat(fd).st_size)
                try:
                    write_all(fd, text.encode("utf-8"))
                    os.fsync(fd)
                except OSError:
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, start)
                    raise
            finally:
                os.close(fd)
        finally:
            self._whole_lock.release()


def cut_torn_line(fd: int, size: int) -> int:
    """Cut a last line that has no newline (a record its writer never finished: no reader
    takes it) off the file open as ``fd``; the file's new size."""

    def read(offset: int, n: int) -> bytes:  # (os.pread is not on Windows)
        os.lseek(fd, offset, os.SEEK_SET)
        return os.read(fd, n)

    if size == 0 or read(size - 1, 1) == b"\n":
        return size
    end = size
    while end > 0:
        take = min(end, 1 << 16)
        newline = read(end - take, take).rfind(b"\n")
        if newline >= 0:
            end = end - take + newline + 1
            break
        end -= take
    log.warning(f"the journal's last record was cut off mid-line ({size - end} bytes): removed")
    os.ftruncate(fd, end)
    return end


def write_all(fd: int, data: bytes) -> None:
    """os.write until all of ``data`` is written (a write may take only part of it)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def study_lock_path(url: str, study_name: str) -> Path:
    """The study lock of ``study_name`` beside the journal (one per study)."""
    key = zlib.crc32(study_name.encode())
    return Path(f"{path_of(url)}.study-{key:08x}.lock")


# --- a lock that works across machines ---------------------------------------------------


class NfsLock:
    """An exclusive lock between processes on any machine that sees ``path``: a symlink
    whose target names its holder (host, pid, a token), created atomically, deleted on
    release. Like sweep.system.portable.FileLock, one object is shared by its process's threads
    and is reentrant (each acquire needs its release).

    A lock left behind is broken when its holder is a process of this host that no longer
    exists, or when it went LOCK_STALE_SECONDS without the refresh its holder makes every
    LOCK_REFRESH_SECONDS (a waiter times this on its own clock, so clocks need not agree).
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = str(path)
        self._token = f"{socket.gethostname()}\t{os.getpid()}\t{uuid.uuid4().hex}"
        self._count = 0
        self._mutex = threading.Lock()
        self._closed = threading.Event()
        self._refresher: threading.Thread | None = None

    @property
    def held(self) -> bool:
        return self._count > 0

    def acquire(self, wait: bool = True) -> bool:
        """Take the lock; with ``wait=False`` only if nobody holds it. Whether it is held."""
        with self._mutex:  # one thread of this process goes for the file at a time
            if self._count:
                self._count += 1
                return True
            if not self._take(wait):
                return False
            self._count = 1
            if self._refresher is None:
                self._refresher = threading.Thread(target=self._refresh, daemon=True)
                self._refresher.start()
            return True

    def release(self) -> None:
        with self._mutex:
            if not self._count:
                return
            self._count -= 1
            if not self._count:
                self._give_back()

    def close(self) -> None:
        """Release the lock however many times it was taken."""
        with self._mutex:
            if self._count:
                self._count = 0
                self._give_back()
        self._closed.set()

    def __enter__(self) -> NfsLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _take(self, wait: bool) -> bool:
        seen, since, delay = None, time.monotonic(), 0.001
        while True:
            try:
                os.symlink(self._token, self.path)
                return True
            except FileExistsError:
                pass
            holder, mtime = self._holder()
            if holder is None:
                continue  # released meanwhile
            if holder == self._token or self._dead_here(holder):
                self._break(holder)  # ours, left by a failed release; or a dead process's
                continue
            if not wait:
                return False
            if (holder, mtime) != seen:
                seen, since = (holder, mtime), time.monotonic()
            elif time.monotonic() - since > LOCK_STALE_SECONDS:
                log.warning("breaking the lock %s: its holder stopped refreshing it", self.path)
                self._break(holder)
                continue
            time.sleep(delay)
            delay = min(2 * delay, POLL_SECONDS)

    def _holder(self) -> tuple[str | None, int | None]:
        try:
            return os.readlink(self.path), os.lstat(self.path).st_mtime_ns
        except OSError:  # FileNotFoundError, or an NFS hiccup: look again
            return None, None

    @staticmethod
    def _dead_here(holder: str) -> bool:
        host, pid, *_ = [*holder.split("\t"), "", ""]
        return host == socket.gethostname() and pid.isdigit() and not pid_alive(int(pid))

    def _break(self, holder: str) -> None:
        """Remove the lock if ``holder`` still has it. A rename is atomic, so of two
        processes breaking it only one gets the link; one that finds another holder
        there by then (broken and taken again meanwhile) puts that lock back."""
        grave = f"{self.path}.{uuid.uuid4().hex}.broken"
        try:
            os.rename(self.path, grave)
        except OSError:
            return
        with contextlib.suppress(OSError):
            found = os.readlink(grave)
            if found != holder:
                with contextlib.suppress(FileExistsError):
                    os.symlink(found, self.path)
        with contextlib.suppress(OSError):
            os.unlink(grave)

    def _give_back(self) -> None:
        holder, _ = self._holder()
        if holder != self._token:
            log.warning("the lock %s was broken while this process held it", self.path)
            return
        self._break(self._token)

    def _refresh(self) -> None:
        """While held, touch the link so that waiters see its holder is alive."""
        while not self._closed.wait(LOCK_REFRESH_SECONDS):
            if self._count and self._holder()[0] == self._token:
                with contextlib.suppress(OSError, NotImplementedError):
                    os.utime(self.path, follow_symlinks=False)


# --- liveness of trials --------------------------------------------------------------------


def record_heartbeat(storage: BaseStorage, trial_id: int) -> None:
    """A running trial's heartbeat: Optuna's on an RDB storage, the user attribute on a
    journal (which has none: see the module's docstring)."""
    if isinstance(storage, JournalStorage):
        storage.set_trial_user_attr(trial_id, HEARTBEAT_ATTR, time.time())
    else:
        storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]


def stale(storage: BaseStorage, trial: FrozenTrial, grace: float) -> str | None:
    """On a journal storage: why a RUNNING trial's worker is gone (no heartbeat, nor a
    start, for more than ``grace`` seconds), else None. Other storages: always None
    (Optuna's fail_stale_trials judges their heartbeats)."""
    if not isinstance(storage, JournalStorage):
        return None
    last = trial.user_attrs.get(HEARTBEAT_ATTR)
    if last is None and trial.datetime_start is not None:
        last = trial.datetime_start.timestamp()  # popped, no beat yet (naive = local time)
    if last is None:
        return None
    age = time.time() - float(last)
    return f"no heartbeat for {age:.0f} s" if age > grace else None
