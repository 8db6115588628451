"""A PostgreSQL server that refuses a connection because it has no free one.

Measured (README "Running on a SLURM cluster"): a `sweep worker --jobs 1` holds 3
connections (its pool's two: the trial's path and the heartbeat thread beside it; and the
study lock's own), `--jobs 2` 4 at most. When the server is full, opening a storage fails at
once with one line: nothing has run yet, and waiting would only hide that the server is too
small for the workers. In the middle of a run the same refusal is retried like an outage
(outage.retrying): a peak of workers starting together passes, and giving up would lose the
running trials; if it lasts, the run ends with the same line.
"""

from __future__ import annotations

# SQLSTATE 53300 too_many_connections: "sorry, too many clients already", "remaining
# connection slots are reserved ...", "too many connections for database/role ...".
SQLSTATE = "53300"
TEXTS = ("too many clients", "remaining connection slots", "too many connections")


def too_many(exc: BaseException | None) -> bool:
    seen = 0
    while exc is not None and seen < 10:
        if getattr(getattr(exc, "orig", exc), "sqlstate", None) == SQLSTATE:
            return True
        if any(text in str(exc) for text in TEXTS):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def message(detail: str) -> str:
    return (
        f"the PostgreSQL server has no free connection ({detail}); each worker holds 2-3 "
        "(README): run fewer workers or raise max_connections (or the database's or role's "
        "CONNECTION LIMIT)"
    )
