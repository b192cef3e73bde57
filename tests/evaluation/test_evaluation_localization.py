"""Localization metrics (Arras et al. 2022) against hand-computed examples."""

import numpy as np
import pytest

from keras_patterns import evaluation as ev


def test_hand_computed_example():
    # 3x3 maps; the mask marks the top row (K = 3)
    mask = np.array([[1, 1, 1], [0, 0, 0], [0, 0, 0]], bool)
    maps = np.array([
        # positive part: 4 + 2 on the mask (0 and -1 do not count), 2 + 1 off it -> 6 / 9
        # top 3 of R: 4 (on), 2 (on), 2 (off: ties by index keep the on-mask one first) -> 2 / 3
        [[4.0, 2.0, -1.0], [2.0, 0.0, 1.0], [-5.0, 0.0, 0.0]],
        # all relevance off the mask, the largest at the bottom right
        [[-1.0, 0.0, -2.0], [0.0, 3.0, 0.0], [0.0, 0.0, 7.0]],
        # no positive relevance at all: 0 everywhere, never NaN
        [[-1.0, -1.0, -1.0], [-1.0, -1.0, -1.0], [-1.0, -1.0, -1.0]],
        # only one positive pixel, on the mask: all the mass, but 1 of K = 3 ranks
        [[0.0, 0.5, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
    ])
    out = ev.localization(maps, np.stack([mask] * 4))
    np.testing.assert_allclose(out["relevance_mass_accuracy"], [6 / 9, 0.0, 0.0, 1.0])
    np.testing.assert_allclose(out["relevance_rank_accuracy"], [2 / 3, 0.0, 0.0, 1 / 3])
    np.testing.assert_allclose(out["pointing_game"], [1.0, 0.0, 0.0, 1.0])
    assert all(v.dtype == np.float64 and v.shape == (4,) for v in out.values())


def test_channels_are_summed_before_the_positive_part():
    mask = np.array([[[1, 0], [0, 0]]])
    # pixel (0, 0): channels +3 and -2 sum to 1; pixel (1, 1): +1 and +1 sum to 2
    maps = np.zeros((1, 2, 2, 2))
    maps[0, 0, 0] = [3.0, -2.0]
    maps[0, 1, 1] = [1.0, 1.0]
    out = ev.localization(maps, mask)
    np.testing.assert_allclose(out["relevance_mass_accuracy"], [1 / 3])
    np.testing.assert_allclose(out["relevance_rank_accuracy"], [0.0])
    np.testing.assert_array_equal(
        ev.localization(maps, mask)["relevance_mass_accuracy"],
        ev.localization(maps.sum(-1), mask.astype(float))["relevance_mass_accuracy"])


def test_matches_a_loop_replica_on_random_maps():
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(5, 6, 7))
    masks = rng.uniform(size=(5, 6, 7)) < 0.3
    out = ev.localization(maps, masks)
    for i in range(5):
        r = np.maximum(maps[i].ravel(), 0)
        m = masks[i].ravel()
        k = m.sum()
        top = sorted(range(r.size), key=lambda j: (-r[j], j))[:k]  # continuous values: no ties
        assert out["relevance_mass_accuracy"][i] == pytest.approx(r[m].sum() / r.sum(), rel=1e-12)
        assert out["relevance_rank_accuracy"][i] == pytest.approx(sum(m[j] and r[j] > 0 for j in top) / k)
        assert out["pointing_game"][i] == float(m[int(np.argmax(r))])


def test_rejects_bad_input():
    maps = np.ones((2, 3, 3))
    mask = np.ones((2, 3, 3), bool)
    with pytest.raises(ValueError, match=r"`maps` must have shape \(2, 3, 3\).*Received: maps of shape \(2, 4, 3\)"):
        ev.localization(np.ones((2, 4, 3)), mask)
    with pytest.raises(ValueError, match=r"Received: maps of shape \(3, 3, 3\)"):
        ev.localization(np.ones((3, 3, 3)), mask)
    with pytest.raises(ValueError, match="`masks` must be boolean or 0/1. Received: a value 0.5"):
        ev.localization(maps, np.full((2, 3, 3), 0.5))
    with pytest.raises(ValueError, match=r"empty masks at samples \[1\]"):
        ev.localization(maps, np.stack([mask[0], ~mask[1]]))
    with pytest.raises(ValueError, match="`maps` must be finite"):
        ev.localization(np.full((2, 3, 3), np.inf), mask)
    with pytest.raises(ValueError, match=r"`masks` must have shape \(n, ...\)"):
        ev.localization(np.ones(3), np.ones(3))
