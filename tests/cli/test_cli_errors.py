"""Every bad input: one line `error: ...`, exit code 2, no traceback, storage unchanged."""

import contextlib
import hashlib
import json
import shutil
import sqlite3
import subprocess

import optuna
import pytest

from sweep.cli.main import main
from tests.conftest import check, study_text

GOOD = study_text("s", trials=2)


@pytest.fixture(scope="module")
def db(tmp_path_factory, cifar_dir):
    """A storage holding one finished study, which no bad command may change."""
    folder = tmp_path_factory.mktemp("db")
    (folder / "s.toml").write_text(GOOD)
    url = f"sqlite:///{folder}/sweeps.db"
    assert (
        main(
            [
                "run",
                str(folder / "s.toml"),
                "--storage",
                url,
                "--data-dir",
                str(cifar_dir),
                "--out",
                str(folder / "reports"),
            ]
        )
        == 0
    )
    return folder, url


def digest(folder):
    return hashlib.sha256((folder / "sweeps.db").read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (None, "does not exist"),
        (("trials = 2", "trials = = 2"), "TOML syntax error"),
        (("trials = 2", "trials = 2\ncolour = 1"), "study.colour is not a known key"),
        (("trials = 2", 'trials = "two"'), "study.trials must be a whole number"),
        (("low = 1e-4", "low = 1"), "search.lambda.low (1.0) must be below high (0.1)"),
        (("low = 1e-4", "low = -1"), "must be positive for a log range"),
        (('sampler = "random"', 'sampler = "x"'), "study.sampler is 'x'"),
        (('pruner = "none"', 'pruner = "x"'), "study.pruner is 'x'"),
        (('split = "exercise"', 'split = "x"'), "data.split is 'x'"),
        (("low = 1e-4\nhigh = 1e-1", 'narrow_from = "nope"'), "narrows from study 'nope'"),
        # Values that used to pass validation and then break the storage or the run:
        (("high = 1e-1", "high = inf"), "search.lambda.high must be a finite number, not inf"),
        (("low = 1e-4", "low = nan"), "search.lambda.low must be a finite number, not nan"),
        (("cycles = 1", "cycles = 1\neta_max = inf"), "train.eta_max must be a finite number"),
        (("low = 1e-4\nhigh = 1e-1", 'narrow_from = "s"\nmargin = 320'), "between 0 and 10"),
        (
            ("low = 1e-4\nhigh = 1e-1", "low = -1e308\nhigh = 1e308\nlog = false"),
            "search.lambda from -1e+308 to 1e+308 is wider than a float can hold",
        ),
        (("high = 1e-1", f"high = {10**400}"), "search.lambda.high is larger than a float can"),
        (("seed = 7", "seed = -5"), "study.seed (-5) must be between 0 and 2**32"),
        (("seed = 7", "seed = 9223372036854775807"), "must be between 0 and 2**32"),
        (("trials = 2", "trials = 1000000000"), "must be between 1 and 10000"),
        (('name = "s"', 'name = "/tmp/x"'), "study.name ('/tmp/x') must be 1-64 letters"),
        (('name = "s"', 'name = "../../x"'), "study.name ('../../x') must be"),
        (('name = "s"', f'name = "{"n" * 300}"'), "must be 1-64 letters"),
    ],
)
def test_bad_study_files(db, capsys, tmp_path, cifar_dir, change, message):
    folder, url = db
    before = digest(folder)
    path = tmp_path / "bad.toml"
    if change:
        path.write_text(GOOD.replace(*change).replace('name = "s"', 'name = "bad"'))
    check(capsys, ["run", str(path), "--storage", url, "--data-dir", str(cifar_dir)], message)
    assert digest(folder) == before


def test_a_study_file_that_is_not_utf8(db, capsys, tmp_path, cifar_dir):
    folder, url = db
    before = digest(folder)
    path = tmp_path / "latin1.toml"
    path.write_bytes(GOOD.replace('"s"', '"bad"').encode() + "# caf\xe9\n".encode("latin-1"))
    check(
        capsys,
        ["run", str(path), "--storage", url, "--data-dir", str(cifar_dir)],
        "is not UTF-8 text",
    )
    assert digest(folder) == before


def test_too_many_trials_or_jobs_on_the_command_line(db, capsys, tmp_path, cifar_dir):
    folder, url = db
    before = digest(folder)
    (tmp_path / "s.toml").write_text(GOOD)
    run = ["run", str(tmp_path / "s.toml"), "--storage", url, "--data-dir", str(cifar_dir)]
    check(capsys, [*run, "--trials", "1000000000"], "--trials (1000000000) must be between 1")
    check(capsys, [*run, "--jobs", "1000"], "--jobs 1000 is more than 4 worker processes per core")
    check(capsys, [*run, "--seed", "-5"], "--seed: -5 must be a seed between 0 and 2**32 - 1")
    for command in (["train"], ["gradcheck"]):  # once a traceback: core's ValueError
        check(capsys, [*command, "--seed", "-1"], "--seed: -1 must be a seed between 0")
        check(capsys, [*command, "--seed", str(2**32)], "must be a seed between 0 and 2**32 - 1")
    # --debug adds the traceback; the exit code stays bad input's
    capsys.readouterr()
    assert main(["--debug", "trials", "nosuch", "--storage", url]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.splitlines()[-1].startswith("error: no study named 'nosuch'")
    check(capsys, ["resume", "s", "--storage", url, "--jobs", "1000"], "pass --oversubscribe")
    assert digest(folder) == before


def test_a_read_only_database_folder(db, capsys, tmp_path, cifar_dir):
    # chattr +i: even root cannot create the journal file SQLite needs beside the database.
    folder, url = db
    before = digest(folder)
    (tmp_path / "s.toml").write_text(GOOD.replace("trials = 2", "trials = 3"))
    subprocess.run(["chattr", "+i", str(folder)], check=True)
    try:
        check(
            capsys,
            ["run", str(tmp_path / "s.toml"), "--storage", url, "--data-dir", str(cifar_dir)],
            "is not writable; pass another --storage",
        )
        assert main(["status", "--storage", url]) == 0  # reading still works
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    assert digest(folder) == before


def test_a_read_only_database_file_in_a_writable_folder(db, capsys, tmp_path, cifar_dir):
    # A fine stage and a worker open an existing database without creating one: they were
    # let through, then failed at their first write (a traceback; a worker retried for 2
    # minutes and blamed an outage). chattr +i: read-only even for root.
    folder, _ = db
    copy = tmp_path / "sweeps.db"
    shutil.copyfile(folder / "sweeps.db", copy)
    url = f"sqlite:///{copy}"
    fine = study_text("s-fine", trials=2, search='narrow_from = "s"')
    (tmp_path / "fine.toml").write_text(fine)
    out = tmp_path / "tables"
    subprocess.run(["chattr", "+i", str(copy)], check=True)
    try:
        # A finished study has nothing to write: resume writes its tables (the place a
        # Ctrl-C before them sends the user), a worker runs nothing.
        assert main(["resume", "s", "--storage", url, "--out", str(out)]) == 0
        assert "already finished" in capsys.readouterr().out and (out / "s" / "table.csv").exists()
        assert main(["worker", "s", "--storage", url, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["ran"] == 0
        check(
            capsys,
            ["run", str(tmp_path / "fine.toml"), "--data-dir", str(cifar_dir), "--storage", url],
            "sweeps.db is not writable; check its",
        )
    finally:
        subprocess.run(["chattr", "-i", str(copy)], check=True)
    optuna.load_study(study_name="s", storage=url).set_user_attr("target", 3)  # unfinished
    before = hashlib.sha256(copy.read_bytes()).hexdigest()
    subprocess.run(["chattr", "+i", str(copy)], check=True)
    try:
        for command in ("worker", "resume"):
            check(capsys, [command, "s", "--storage", url], "sweeps.db is not writable; check its")
        assert main(["status", "--storage", url]) == 0  # reading still works
    finally:
        subprocess.run(["chattr", "-i", str(copy)], check=True)
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == before


def test_unknown_study_lists_the_existing_ones(db, capsys):
    folder, url = db
    before = digest(folder)
    for argv in (["trials", "nope"], ["show", "nope", "0"], ["resume", "nope"], ["table", "nope"]):
        check(
            capsys, [*argv, "--storage", url], "no study named 'nope'; studies in this storage: s"
        )
    check(capsys, ["show", "s", "99", "--storage", url], "has no trial 99")
    assert digest(folder) == before


@pytest.mark.parametrize(
    ("storage", "message"),
    [
        ("mysql://localhost/x", "unknown scheme"),
        ("sqlite:///{tmp}/no/such/dir/x.db", "does not exist or is not writable"),
        ("sqlite:///{tmp}/text.db", "is not a SQLite database"),
        ("sqlite:///{tmp}/other.db", "is another program's SQLite database (tables: foo)"),
        ("sqlite:///{tmp}/missing.db", "no study database at"),
        ("sqlite:///", "names no file"),
        ("sqlite:///{tmp}/", "names no file"),
        ("", "the storage URL is empty"),
    ],
)
def test_bad_storage(capsys, tmp_path, cifar_dir, storage, message):
    (tmp_path / "s.toml").write_text(GOOD)
    (tmp_path / "text.db").write_text("not a database")
    with contextlib.closing(sqlite3.connect(tmp_path / "other.db")) as other:
        other.execute("CREATE TABLE foo (a)")
        other.commit()
    before = (tmp_path / "other.db").read_bytes()
    url = storage.format(tmp=tmp_path)
    if "missing" in storage:
        check(capsys, ["status", "--storage", url], message)
    else:
        check(
            capsys,
            ["run", str(tmp_path / "s.toml"), "--storage", url, "--data-dir", str(cifar_dir)],
            message,
        )
    assert (tmp_path / "text.db").read_text() == "not a database"
    assert (tmp_path / "other.db").read_bytes() == before
    assert not (tmp_path / "missing.db").exists()


def test_missing_and_corrupt_data_leave_the_storage_untouched(capsys, tmp_path, monkeypatch):
    from tests.conftest import write_cifar

    monkeypatch.setenv("SWEEP_CIFAR_URL", "http://127.0.0.1:9/none.tar.gz")
    (tmp_path / "s.toml").write_text(GOOD)
    (tmp_path / "nodata").mkdir()  # an existing folder: the download is tried there
    url = f"sqlite:///{tmp_path}/new.db"
    check(
        capsys,
        ["run", str(tmp_path / "s.toml"), "--storage", url, "--data-dir", str(tmp_path / "nodata")],
        "cannot download CIFAR-10",
    )
    root = write_cifar(tmp_path / "data", per_batch=20)
    (root / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"\x00garbage")
    check(
        capsys,
        ["run", str(tmp_path / "s.toml"), "--storage", url, "--data-dir", str(root)],
        "data_batch_1 is not a CIFAR-10 batch",
    )
    assert not (tmp_path / "new.db").exists()


def test_usage_errors_are_exit_2(capsys):
    check(capsys, ["run"], "the following arguments are required")
    check(capsys, ["run", "x.toml", "--jobs", "-1"], "-1 must be 0 or more")
    check(capsys, ["resume", "x", "--jobs", "0"], "0 must be at least 1")
    check(capsys, ["frobnicate"], "invalid choice")
    # named by the command that does not take it, which says where to look
    check(capsys, ["run", "x.toml", "--bogus"], "sweep run: unrecognized arguments: --bogus")
    check(capsys, ["status", "extra"], "(see sweep status --help)")


def test_a_stored_study_name_never_leaves_out(capsys, tmp_path):
    # A database made elsewhere (or by an older version) may hold any study name.
    import optuna

    from sweep.spec.studyfile import load

    url = f"sqlite:///{tmp_path}/old.db"
    made = optuna.create_study(study_name="../escape", storage=url)
    (tmp_path / "s.toml").write_text(GOOD)
    made.set_user_attr("spec", load(tmp_path / "s.toml").to_dict())  # as lambda-sweep's own
    check(
        capsys,
        ["table", "../escape", "--storage", url, "--out", str(tmp_path / "out")],
        "is not usable as a folder name",
    )
    assert not (tmp_path / "escape").exists()


def test_sqlite_url_options_are_refused_before_anything_is_written(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check(capsys, ["status", "--storage", "sqlite:///t1.db?timeout=1"], "has options (timeout=1)")
    (tmp_path / "s.toml").write_text(
        '[study]\nname = "s"\n[objective]\nfile = "f.py"\n[search.x]\nlow = 1.0\nhigh = 2.0\n'
    )
    (tmp_path / "f.py").write_text("def objective(params, ctx):\n    return 1.0\n")
    check(capsys, ["run", "s.toml", "--storage", "sqlite:///t1.db?timeout=1"], "has options")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.py", "s.toml"]


def test_dashboard_checks_port_and_storage_first(tmp_path, capsys):
    import socket

    check(capsys, ["dashboard", "--port", "99999"], "must be a port between 1 and 65535")
    check(
        capsys,
        ["dashboard", "--storage", "postgresql+psycopg://u:pw@127.0.0.1:1/db"],
        "cannot reach the PostgreSQL storage",
    )
    url = f"sqlite:///{tmp_path}/d.db"
    from sweep.store.storage import open_storage

    open_storage(url)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        check(
            capsys, ["dashboard", "--storage", url, "--port", str(port)], f"port {port} is in use"
        )


def test_the_resume_hint_never_prints_a_password(monkeypatch):
    from sweep.execution.runner import resume_command

    monkeypatch.delenv("SWEEP_STORAGE", raising=False)
    url = "postgresql+psycopg://postgres:S3cretPW@db.example/sweeps"
    hint = resume_command("s", url, None)
    assert "S3cretPW" not in hint and "postgres:***@db.example/sweeps" in hint
    assert "SWEEP_STORAGE" in hint
    monkeypatch.setenv("SWEEP_STORAGE", url)
    assert resume_command("s", url, None) == "sweep resume s"
    assert "***" not in resume_command("s", "sqlite:///a b.db", None)


def test_studies_made_by_optuna_itself_are_listed_but_never_taken_over(tmp_path, capsys, cifar_dir):
    import optuna

    url = f"sqlite:///{tmp_path}/foreign.db"
    plain = optuna.create_study(study_name="plain", storage=url)
    plain.optimize(lambda t: t.suggest_float("lambda", 1e-5, 1e-1, log=True), n_trials=3)
    two = optuna.create_study(study_name="two", storage=url, directions=["minimize"] * 2)
    two.optimize(lambda t: (t.suggest_float("x", 0, 1), 1.0), n_trials=2)
    path = tmp_path / "plain.toml"
    path.write_text(study_text("plain"))
    argv = ["run", str(path), "--storage", url, "--data-dir", str(cifar_dir)]
    check(capsys, argv, "'plain' is in the storage but was not made")
    assert len(optuna.load_study(study_name="plain", storage=url).trials) == 3
    for argv in (["trials", "plain"], ["show", "two", "0"], ["table", "plain"], ["resume", "two"]):
        check(capsys, [*argv, "--storage", url], "was not made by lambda-sweep")
    assert main(["status", "--storage", url]) == 0
    out = capsys.readouterr().out
    assert "plain" in out and "two" in out


def test_a_fine_stage_without_its_parent_is_refused_before_data_is_looked_for(
    tmp_path, capsys, monkeypatch
):
    import optuna

    monkeypatch.setenv("SWEEP_CIFAR_URL", "http://127.0.0.1:9/none.tar.gz")
    url = f"sqlite:///{tmp_path}/f.db"
    optuna.create_study(study_name="other", storage=url)
    path = tmp_path / "fine.toml"
    path.write_text(study_text("fine", search='narrow_from = "nope"'))
    (tmp_path / "empty").mkdir()
    argv = ["run", str(path), "--storage", url, "--data-dir", str(tmp_path / "empty")]
    check(capsys, argv, "narrows from study 'nope', which is not in the storage")
    assert not list((tmp_path / "empty").iterdir())  # no download was started


def test_a_broken_pipe_inside_the_work_is_a_failure_not_a_closed_output(monkeypatch):
    # Only a pipe that our stdout or stderr writes to, closed by its reader (`| head`),
    # ends a command quietly with 0; one of the work's own (a helper process that could
    # not start) is a failure and must not pass for a finished command.
    from sweep.cli import main as cli

    def broken(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setitem(cli.COMMANDS, "status", broken)
    with pytest.raises(BrokenPipeError):
        main(["status"])


def test_a_reader_gone_is_told_from_a_reader_still_there():
    import os

    from sweep.cli.console import reader_gone

    read, write = os.pipe()
    with open(write, "w") as stream:
        assert not reader_gone(stream)
        os.close(read)
        assert reader_gone(stream)


def test_show_on_a_study_without_trials_says_it_has_none(tmp_path, capsys):
    (tmp_path / "f.py").write_text("def f(params, ctx):\n    return params['x']\n")
    (tmp_path / "e.toml").write_text(
        '[study]\nname = "e"\ntrials = 2\n[objective]\nfile = "f.py"\nfunction = "f"\n'
        "[search.x]\nlow = 0.0\nhigh = 1.0\nlog = false\n"
    )
    url = f"sqlite:///{tmp_path}/empty.db"
    argv = ["run", str(tmp_path / "e.toml"), "--jobs", "0", "--time-limit", "0"]
    assert main([*argv, "--storage", url, "--out", str(tmp_path / "out")]) == 0
    check(capsys, ["show", "e", "0", "--storage", url], "has no trial 0; it has no trials yet")


def test_reproduce_with_a_mistyped_data_dir_stops_before_any_work(tmp_path, capsys):
    out = tmp_path / "report"
    argv = ["reproduce", "--data-dir", str(tmp_path / "nonexistent"), "--out", str(out)]
    check(capsys, argv, "does not exist")
    assert not out.exists()  # no gradient check run, no state.json written


@pytest.mark.parametrize("bonus", [[], ["--bonus"]], ids=["seed", "bonus"])
def test_reproduce_with_a_bad_storage_url_leaves_no_out_folder(tmp_path, capsys, bonus):
    out = tmp_path / "report"
    check(capsys, ["reproduce", *bonus, "--storage", "bogus://x", "--out", str(out)], "scheme")
    assert not out.exists()
