"""A PostgreSQL server with no free connection: one line and exit 2, not a 120-s wait."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from tests.conftest import sweep

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
SYNTHETIC = Path(__file__).resolve().parents[2] / "examples" / "synthetic" / "coarse.toml"


def test_a_full_server_is_one_line_and_exit_2(pg_url, tmp_path):
    made = subprocess.run(
        sweep("run", str(SYNTHETIC), "--storage", pg_url, "--jobs", "0", "--time-limit", "0",
              "--out", str(tmp_path / "out")),
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    plain = pg_url.replace("postgresql+psycopg://", "postgresql://")
    database = plain.rsplit("/", 1)[1]
    role = f"r_{uuid.uuid4().hex[:10]}"  # superusers are exempt from a database's limit
    with psycopg.connect(plain, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN")
        admin.execute(f"ALTER DATABASE {database} CONNECTION LIMIT 1")
    host = plain.split("@", 1)[1]
    try:
        with psycopg.connect(f"postgresql://{role}@{host}"):  # the one free connection
            started = time.monotonic()
            full = subprocess.run(
                sweep("worker", "synthetic-coarse", "--storage",
                      f"postgresql+psycopg://{role}@{host}"),
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            seconds = time.monotonic() - started
    finally:
        with psycopg.connect(plain, autocommit=True) as admin:
            admin.execute(f"DROP ROLE {role}")
    assert full.returncode == 2
    (line,) = full.stderr.strip().splitlines()
    assert line.startswith("error: the PostgreSQL server has no free connection (")
    assert "too many connections for database" in line
    assert "run fewer workers or raise max_connections" in line
    assert seconds < 30  # refused at once, not retried as an outage
