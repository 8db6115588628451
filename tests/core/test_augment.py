"""Flips and translations of training batches (core.augment) and their use in training."""

import numpy as np
import pytest

from core import augment, pack
from core.augment import Augmenter, draw, gather, index_maps, transform_index
from core.data import load_split
from core.errors import ConfigError
from core.streams import AUGMENT_STREAM, stream
from core.training import TrainConfig, train, train_pack

SIDE = 32


@pytest.fixture(scope="module")
def exercise(cifar_dir):
    return load_split("exercise", cifar_dir)


def labelled_images(n=2):
    """n images whose every value names its place: image i, plane p, pixel (r, c) holds
    i * 10000 + p * 1024 + r * 32 + c. Shape (n, 3072) float32 (exact below 2**24)."""
    i, p, r, c = np.meshgrid(
        np.arange(n), np.arange(3), np.arange(SIDE), np.arange(SIDE), indexing="ij"
    )
    return (i * 10000 + p * 1024 + r * 32 + c).reshape(n, 3072).astype(np.float32)


def transformed(X, rows, flipped, dy, dx, translate):
    """X's images ``rows`` under one transformation each, as (n, 3, 32, 32)."""
    maps = index_maps(translate)
    ids = transform_index(np.asarray(flipped), np.asarray(dy), np.asarray(dx), translate)
    out = np.empty((len(rows), 3072), dtype=X.dtype)
    gather(X.reshape(-1), np.asarray(rows), ids, maps, out)
    return out.reshape(-1, 3, SIDE, SIDE)


def test_a_flip_maps_pixel_r_c_to_r_31_minus_c_in_every_plane():
    X = labelled_images()
    out = transformed(X, [1, 0], [True, True], [0, 0], [0, 0], translate=0)
    src = X.reshape(2, 3, SIDE, SIDE)
    for p in range(3):
        for r in (0, 7, 31):
            for c in (0, 5, 31):
                assert out[0, p, r, 31 - c] == src[1, p, r, c]
                assert out[1, p, r, 31 - c] == src[0, p, r, c]
    assert np.array_equal(out[0], src[1, :, :, ::-1])


def test_a_shift_by_dy_dx_moves_every_pixel_down_dy_and_right_dx_with_edge_fill():
    X = labelled_images(1)
    src = X.reshape(3, SIDE, SIDE)
    dy, dx = 2, -3
    out = transformed(X, [0], [False], [dy], [dx], translate=4)[0]
    # interior: the pixel at (r, c) is now at (r + dy, c + dx)
    for r in range(SIDE - dy):
        for c in range(-dx, SIDE):
            assert np.all(out[:, r + dy, c + dx] == src[:, r, c])
    # rows 0..dy-1 repeat the image's first row; the last -dx columns repeat its last one
    assert np.all(out[:, :dy, :] == out[:, dy : dy + 1, :])
    assert np.all(out[:, :, SIDE + dx :] == out[:, :, SIDE + dx - 1 : SIDE + dx])
    assert np.array_equal(out[:, 0, 0], src[:, 0, -dx])


def test_a_flipped_image_is_flipped_then_shifted():
    X = labelled_images(1)
    both = transformed(X, [0], [True], [1], [2], translate=2)[0]
    flipped = X.reshape(3, SIDE, SIDE)[:, :, ::-1]
    assert np.array_equal(both[:, 1:, 2:], flipped[:, :-1, :-2])


def test_no_flip_and_no_shift_is_the_identity_for_every_translate():
    X = labelled_images()
    for k in (0, 1, augment.MAX_TRANSLATE):
        out = transformed(X, [1, 0], [False, False], [0, 0], [0, 0], translate=k)
        assert np.array_equal(out.reshape(2, -1), X[[1, 0]])


def test_draws_flip_half_the_images_and_shift_uniformly_within_k():
    k, n = 3, 20_000
    ids = draw(np.random.default_rng(0), n, flip=True, translate=k)
    side = 2 * k + 1
    flipped, rest = np.divmod(ids, side * side)
    dy, dx = np.divmod(rest, side)
    assert np.mean(flipped) == pytest.approx(0.5, abs=0.02)
    for shift in (dy - k, dx - k):
        assert shift.min() == -k and shift.max() == k
        counts = np.bincount(shift + k, minlength=side)
        assert counts.min() > 0.8 * n / side
    assert not np.any(draw(np.random.default_rng(0), 100, flip=False, translate=k) >= side**2)
    assert not np.any(draw(np.random.default_rng(0), 100, flip=True, translate=0) > 1)


def test_augmentation_is_seeded_and_vectorised_over_a_batch():
    X = np.random.default_rng(1).standard_normal((50, 3072)).astype(np.float32)
    rows = np.arange(40, 0, -1)
    a, b = (Augmenter(True, 2, np.random.default_rng(5)) for _ in range(2))
    out_a, out_b = np.empty((40, 3072), np.float32), np.empty((40, 3072), np.float32)
    for _ in range(3):
        assert np.array_equal(
            a.batch(X.reshape(-1), rows, out_a), b.batch(X.reshape(-1), rows, out_b)
        )
    # each image is one of its own transformations, applied with the precomputed maps
    ids = draw(np.random.default_rng(5), 40, True, 2)
    want = np.stack([X[r][a.maps[t]] for r, t in zip(rows, ids, strict=True)])
    first = Augmenter(True, 2, np.random.default_rng(5)).batch(X.reshape(-1), rows, out_a)
    assert np.array_equal(first, want)


def config(**more):
    return TrainConfig(n_s=10, cycles=1, seed=6, evals_per_cycle=2, **more)


def batches_seen(monkeypatch, configs, data):
    """The (images, labels) of every step of a packed run: pack.step is called once per
    step with the batch the whole pack trains on."""
    seen = []
    real = pack.step

    def spy(net, X, y, *rest):
        seen.append((X.copy(), y.copy(), net.size))
        return real(net, X, y, *rest)

    with monkeypatch.context() as m:
        m.setattr(pack, "step", spy)
        train_pack(configs, *data, record=False)
    return seen


def test_augmentation_keeps_the_batch_order_and_draws_from_its_own_stream(exercise, monkeypatch):
    data = (exercise.X_train, exercise.y_train, exercise.X_val[:0], exercise.y_val[:0])
    plain = batches_seen(monkeypatch, [config()], data)
    aug = batches_seen(monkeypatch, [config(flip=True, translate=3)], data)
    assert len(plain) == len(aug) == 20
    for (xp, yp, _), (xa, ya, _) in zip(plain, aug, strict=True):
        assert np.array_equal(yp, ya)  # the same images, in the same order
        assert not np.array_equal(xp, xa)
    # and each is those images under the augment stream's draws, one draw per step
    maps, rng = index_maps(3), stream(6, AUGMENT_STREAM)
    for (xp, _, _), (xa, _, _) in zip(plain, aug, strict=True):
        ids = draw(rng, len(xp), True, 3)
        assert np.array_equal(np.take_along_axis(xp, maps[ids], axis=1), xa)


def test_every_member_of_a_pack_trains_on_the_same_augmented_batch_as_alone(exercise, monkeypatch):
    data = (exercise.X_train, exercise.y_train, exercise.X_val, exercise.y_val)
    runs = [
        config(lam=1e-3, flip=True, translate=2),
        config(lam=1e-2, flip=True, translate=2, hidden=80),
        config(lam=3e-2, flip=True, translate=2, dropout=0.2),
    ]
    packed = batches_seen(monkeypatch, runs, data)
    assert all(size == 3 for _, _, size in packed)  # one batch per step for all members
    for run in runs:
        alone = batches_seen(monkeypatch, [run], data)
        for (xp, _, _), (xa, _, _) in zip(packed, alone, strict=True):
            assert np.array_equal(xp, xa)
    out = train_pack(runs, *data)
    for run, member in zip(runs, out, strict=True):
        alone = train(run, *data)
        np.testing.assert_allclose(member.params.W1, alone.params.W1, rtol=1e-4, atol=1e-6)
        assert member.final["val_accuracy"] == pytest.approx(alone.final["val_accuracy"], abs=3e-3)


def test_runs_with_other_augmentation_cannot_share_a_pack(exercise):
    data = (exercise.X_train, exercise.y_train, exercise.X_val, exercise.y_val)
    with pytest.raises(ConfigError, match="must share"):
        train_pack([config(flip=True), config()], *data)
    with pytest.raises(ConfigError, match="must share"):
        train_pack([config(translate=1), config(translate=2)], *data)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"translate": -1}, r"translate \(-1\) must be a whole number of pixels from 0 to 8"),
        ({"translate": 9}, r"translate \(9\) must be a whole number of pixels from 0 to 8"),
        ({"translate": 1.5}, r"translate \(1.5\) must be a whole number"),
        ({"flip": "yes"}, r"flip \('yes'\) must be true or false"),
        ({"hidden": 0}, r"hidden \(0\) must be at least 1"),
    ],
)
def test_bad_augmentation_and_width_settings_are_refused_with_the_rule(settings, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**settings)
