"""Packs are the oldest queued trials in order, whatever the workers' timing: which trials
train side by side, and where in the pack, decides their float32 rounding."""

import multiprocessing as mp

import pytest

PACK, WORKERS = 5, 4
TRIALS = PACK * WORKERS


def _pop_a_pack(url: str, barrier, packs, errors) -> None:
    try:
        from sweep.store.queue import next_trials
        from sweep.store.study import open_study

        stored = open_study("packs", url)
        spec = stored.spec
        barrier.wait(timeout=60)  # every worker pops at the same moment
        popped, _ = next_trials(stored, spec, PACK, WORKERS)
        packs.put([p.number for p in popped])
    except Exception as exc:  # reported to the test, which fails on any
        errors.put(repr(exc))


@pytest.mark.parametrize("round_", range(4))
def test_workers_popping_together_get_the_queue_in_whole_packs(tmp_path, round_):
    from sweep.spec import studyfile
    from sweep.store.queue import queue_next
    from sweep.store.study import prepare
    from tests.conftest import study_text

    (tmp_path / "packs.toml").write_text(study_text("packs", trials=TRIALS))
    spec = studyfile.load(tmp_path / "packs.toml")
    url = f"sqlite:///{tmp_path}/packs.db"
    stored, _ = prepare(spec, url, target=TRIALS)
    with stored.locked():
        assert queue_next(stored, spec, ahead=TRIALS) == TRIALS
    stored.close()
    ctx = mp.get_context("spawn")
    barrier, packs, errors = ctx.Barrier(WORKERS), ctx.Queue(), ctx.Queue()
    procs = [
        ctx.Process(target=_pop_a_pack, args=(url, barrier, packs, errors)) for _ in range(WORKERS)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert errors.empty(), errors.get()
    got = sorted(packs.get(timeout=10) for _ in range(WORKERS))
    assert got == [list(range(k, k + PACK)) for k in range(0, TRIALS, PACK)]
