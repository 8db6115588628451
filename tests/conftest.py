"""Shared fixtures: small synthetic CIFAR-10 copies in the official python layout."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from core.data import FOLDER, TEST_BATCH, TRAIN_BATCHES
from sweep.system.portable import console_script


def write_cifar(
    root: Path, *, per_batch: int = 1100, str_keys: bool = False, seed: int = 0
) -> Path:
    """Write data_batch_1..5, test_batch and batches.meta with learnable synthetic images.

    Each class has its own mean image, so a network can do much better than chance.
    Keys are bytes (as pickle.load(..., encoding="bytes") gives for the real files) unless
    ``str_keys``.
    """
    rng = np.random.default_rng(seed)
    folder = root / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    centres = rng.uniform(40, 215, size=(10, 3072))

    def key(k: str):
        return k if str_keys else k.encode()

    for name in (*TRAIN_BATCHES, TEST_BATCH):
        labels = rng.integers(0, 10, per_batch)
        noise = rng.normal(0, 40, size=(per_batch, 3072))
        data = np.clip(centres[labels] + noise, 0, 255).astype(np.uint8)
        batch = {key("batch_label"): key(name), key("labels"): labels.tolist(), key("data"): data}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({key("label_names"): [key(f"class{i}") for i in range(10)]}, f, protocol=2)
    return root


@pytest.fixture(scope="session")
def cifar_dir(tmp_path_factory) -> Path:
    """A data root with a synthetic cifar-10-batches-py/ (1,100 images per batch)."""
    return write_cifar(tmp_path_factory.mktemp("cifar"))


def study_text(
    name: str = "s",
    *,
    trials: int = 4,
    seed: int = 7,
    sampler: str = "random",
    pruner: str = "none",
    repeats: int = 1,
    n_s: int = 5,
    evals_per_cycle: int = 2,
    search: str = "low = 1e-4\nhigh = 1e-1",
) -> str:
    """A small study file for tests: exercise split, one cycle of 2 * n_s steps."""
    return f"""
[study]
name = "{name}"
trials = {trials}
seed = {seed}
sampler = "{sampler}"
pruner = "{pruner}"
repeats = {repeats}
[data]
split = "exercise"
[train]
n_s = {n_s}
cycles = 1
evals_per_cycle = {evals_per_cycle}
[search.lambda]
{search}
"""


@pytest.fixture
def pg_url():
    """A fresh database on the PostgreSQL server that .ci/run starts (.ci/postgres.sh).

    In CI these tests must run: without a server they fail there instead of skipping.
    """
    base = os.environ.get("SWEEP_TEST_POSTGRES_URL")
    if not base:
        if os.environ.get("CI") == "true":
            pytest.fail("SWEEP_TEST_POSTGRES_URL is not set: .ci/run must start PostgreSQL")
        pytest.skip('no PostgreSQL server: eval "$(.ci/postgres.sh start)" to run these')
    import psycopg

    plain = base.replace("postgresql+psycopg://", "postgresql://")
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield base.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def sweep(*args: str) -> list[str]:
    """The real `sweep` command, for tests that run it in a subprocess: the console script
    of the environment running the tests (a venv's need not be on PATH, and another
    environment's `sweep` on PATH would test another copy), else ``python -m sweep.cli``."""
    exe = console_script("sweep")
    return [exe, *args] if exe else [sys.executable, "-m", "sweep.cli", *args]


def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """The real `sweep` command in its own process group, as a terminal runs it."""
    return subprocess.Popen(
        sweep(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )


def wait_for(predicate, timeout: float = 120.0, every: float = 0.1):
    """Poll until ``predicate()`` is truthy and return it; fail after ``timeout`` s."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if value := predicate():
            return value
        time.sleep(every)  # the workers need the cores more than this loop does
    raise AssertionError("timed out waiting")


def children(pid: int) -> set[int]:
    """Pids of the descendants of ``pid`` (from /proc)."""
    parent = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier} - found
        found |= frontier
    return found


# --- helpers shared by the tests ---------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def check(capsys, argv, message):
    capsys.readouterr()
    from sweep.cli.main import main

    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    # One error line, last; at most a progress line ("downloading ...") before it.
    assert lines[-1].startswith("error: ") and message in lines[-1], err
    assert sum(line.startswith("error") for line in lines) == 1 and "Traceback" not in err


def digest_of(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def race_orchestrators(target, processes: int, rounds: list, *extra) -> list:
    """Start ``processes`` fresh interpreters at once, each running
    ``target(i, rounds, *extra, barrier, results)`` (a barrier lines them up before each
    round); return every outcome put on ``results``, failing on any that is not 0."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(processes), ctx.Queue()
    procs = [
        ctx.Process(target=target, args=(i, rounds, *extra, barrier, results))
        for i in range(processes)
    ]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=300) for _ in range(len(rounds) * processes)]
    for p in procs:
        p.join(60)
    failed = [o for o in outcomes if o[2] != 0]
    assert not failed, failed[:3]
    return outcomes
