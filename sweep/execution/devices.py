"""One GPU per local worker process (`--gpus LIST`, `--workers-per-gpu N`).

Each worker process sees only its device: CUDA_VISIBLE_DEVICES is set in the process
before the user's function is imported (frameworks read it once, when CUDA starts), so the
function simply uses "the" GPU (cuda:0). The device is chosen from the worker's index
(index i gets gpus[i % len(gpus)], so N workers per device at most when jobs <= len(gpus)
* N) and kept for the life of the process: CUDA cannot move to another device once it has
started, so a process that runs a second worker keeps its first device.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from sweep.errors import SweepError

VARIABLE = "CUDA_VISIBLE_DEVICES"
# What CUDA_VISIBLE_DEVICES takes: device indices, or (a prefix of) a device's UUID as
# nvidia-smi -L prints it (GPU-..., MIG-...). Anything else makes CUDA see no device at
# all, and a framework then runs on the CPU without a word.
DEVICE = re.compile(r"\d+|(GPU|MIG)-[0-9A-Za-z/-]+")
_mine: dict[str, str | None] = {"device": None}  # this process's device, once claimed


def parse_gpus(text: str, environ: Mapping[str, str] = os.environ) -> tuple[str, ...]:
    """``--gpus``: "0,1" (device ids or UUIDs, as CUDA_VISIBLE_DEVICES takes them), or
    "auto": the devices CUDA_VISIBLE_DEVICES lists now. ValueError when there are none."""
    if text.strip() == "auto":
        listed = environ.get(VARIABLE, "")
        gpus = tuple(g.strip() for g in listed.split(",") if g.strip())
        if not gpus:
            now = "it is not set" if VARIABLE not in environ else f"it is {listed!r}"
            raise ValueError(f"auto needs {VARIABLE} to list the devices ({now})")
        where = f"{VARIABLE} ({listed!r})"
    else:
        gpus = tuple(g.strip() for g in text.split(","))
        where = repr(text)
    if not all(gpus):
        raise ValueError(f"{where} is not a list of devices (e.g. 0,1)")
    for g in gpus:
        if not DEVICE.fullmatch(g):
            inside = "" if where == repr(g) else f" (in {where})"
            raise ValueError(
                f"{g!r} is not a device{inside}; give indices (0,1) or UUIDs "
                "(GPU-..., MIG-..., as nvidia-smi -L prints them)"
            )
    if len(set(gpus)) < len(gpus):
        raise ValueError(f"{text!r} names a device twice; use --workers-per-gpu to share one")
    return gpus


def check(gpus: tuple[str, ...], per_gpu: int, jobs: int) -> None:
    """Refuse more local workers than the devices take."""
    if gpus and jobs > len(gpus) * per_gpu:
        raise SweepError(
            f"--jobs {jobs} is more than {len(gpus)} device(s) x --workers-per-gpu {per_gpu}; "
            "lower --jobs, list more --gpus or raise --workers-per-gpu"
        )


def claim(gpus: tuple[str, ...] | list[str], index: int) -> str | None:
    """This process's device for worker ``index`` (0-based among the command's local
    workers), set in CUDA_VISIBLE_DEVICES; None without --gpus. A process keeps the
    device it claimed first."""
    if not gpus:
        return None
    if _mine["device"] not in gpus:  # never claimed here (or by another run's devices)
        _mine["device"] = str(gpus[index % len(gpus)])
        os.environ[VARIABLE] = _mine["device"]
    return _mine["device"]


def mine() -> str | None:
    """The device this process claimed, or None."""
    return _mine["device"]


def adopt(device: str | None) -> None:
    """In a process started by a worker (worker.run_isolated): the worker's device, which
    CUDA_VISIBLE_DEVICES already holds (inherited)."""
    _mine["device"] = device
