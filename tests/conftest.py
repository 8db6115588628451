"""Shared fixtures: small synthetic CIFAR-10 copies in the official python layout."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from core.data import FOLDER, TEST_BATCH, TRAIN_BATCHES


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
    repeats: int = 1,
    search: str = "low = 1e-4\nhigh = 1e-1",
) -> str:
    """A tiny study file for tests: exercise split, 5-step half cycles, 2 evaluations."""
    return f"""
[study]
name = "{name}"
trials = {trials}
seed = {seed}
sampler = "{sampler}"
repeats = {repeats}
[data]
split = "exercise"
[train]
n_s = 5
cycles = 1
evals_per_cycle = 2
[search.lambda]
{search}
"""
