"""Single training runs (`sweep train`, reproduce's final model and exercises): their data."""

import numpy as np

from core.data import load_split
from core.training import TrainConfig, train
from sweep.execution.train import run_training, training_data, warm_split
from sweep.objectives import datacache
from tests.conftest import write_cifar

CONFIG = TrainConfig(lam=0.01, hidden=8, n_s=5, cycles=1, evals_per_cycle=2)


def same_params(a, b) -> bool:
    x, y = a.arrays(), b.arrays()
    return x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)


def test_a_single_run_trains_on_the_shared_copy_with_the_numbers_of_the_batches(tmp_path):
    root = write_cifar(tmp_path / "data", per_batch=200)
    summary, result = run_training(CONFIG, split="exercise", data_dir=root, progress=False)
    assert list((root / datacache.CACHE).glob("exercise-float32-*"))  # made on first use
    assert isinstance(training_data("exercise", root, "float32").X_train, np.memmap)
    raw = load_split("exercise", root)
    alone = train(CONFIG, raw.X_train, raw.y_train, raw.X_val, raw.y_val)
    assert same_params(result.params, alone.params)
    assert summary.val_accuracy == alone.final["val_accuracy"]


def test_where_the_copy_cannot_be_written_the_run_loads_the_batches(tmp_path, monkeypatch):
    root = write_cifar(tmp_path / "data", per_batch=200)
    (root / datacache.CACHE).write_text("a file where the cache folder would go")
    (tmp_path / "cache").write_text("and where the per-user cache folder would go")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    warm_split("final", root, "float32")  # best effort: nothing made, nothing raised
    data = training_data("exercise", root, "float32")
    assert not isinstance(data.X_train, np.memmap)
    _, result = run_training(CONFIG, split="exercise", data_dir=root, progress=False)
    raw = load_split("exercise", root)
    assert same_params(
        result.params, train(CONFIG, raw.X_train, raw.y_train, raw.X_val, raw.y_val).params
    )


def test_warm_split_makes_the_copy_a_later_run_opens(tmp_path):
    root = write_cifar(tmp_path / "data", per_batch=400)
    warm_split("final", root, "float32")
    (folder,) = (root / datacache.CACHE).glob("final-float32-*")
    assert datacache.damage(folder) is None
    assert isinstance(training_data("final", root, "float32").X_train, np.memmap)


def test_a_second_run_in_the_same_process_sees_batches_changed_meanwhile(tmp_path):
    root = write_cifar(tmp_path / "data", per_batch=200, seed=1)
    before = np.array(training_data("exercise", root, "float32").X_train)
    write_cifar(tmp_path / "data", per_batch=200, seed=2)  # other images in place
    after = training_data("exercise", root, "float32").X_train
    assert not np.array_equal(before, after)
    assert np.array_equal(after, load_split("exercise", root).X_train)
