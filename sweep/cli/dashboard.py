"""`sweep dashboard`: optuna-dashboard on a study storage, checked first."""

from __future__ import annotations

import os
import shutil
import socket

from sweep.errors import SweepError
from sweep.store import journal
from sweep.store.storage import open_storage, validate_url
from sweep.system.portable import console_script


def launch(storage: str | None, port: int) -> None:
    """Check the storage and the port, then become optuna-dashboard on 127.0.0.1:port."""

    url = validate_url(storage, create=False)
    open_storage(url, read_only=True)  # an unreachable server is one line here, not there
    exe = console_script("optuna-dashboard") or shutil.which("optuna-dashboard")
    if exe is None:
        raise SweepError("optuna-dashboard is not installed: pip install 'lambda-sweep[dashboard]'")
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise SweepError(f"port {port} is in use; pass another --port") from None
    # optuna-dashboard takes a journal as its file's path, with a hint of the storage class
    # (its --help); the lock it takes there is the one sweep takes (JournalFileSymlinkLock).
    if journal.is_journal(url):
        where = [str(journal.path_of(url)), "--storage-class", "JournalFileStorage"]
    else:
        where = [url]
    # Become the dashboard (no child left running when this process is stopped).
    os.execv(exe, [exe, *where, "--host", "127.0.0.1", "--port", str(port)])
