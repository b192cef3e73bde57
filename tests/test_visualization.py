"""Pictures: numpy helpers against hand-computed arrays, one image-level test of the grid."""

import matplotlib
import numpy as np
import pytest

import keras_patterns as kp
from keras_patterns import visualization as vis

matplotlib.use("Agg")


def test_reduce_channels_by_hand():
    a = np.array([[[3.0, -4.0], [0.0, 0.0]]])  # (1, 2, 2): H=1, W=2, C=2
    np.testing.assert_array_equal(vis.reduce_channels(a, "sum"), [[-1.0, 0.0]])
    np.testing.assert_array_equal(vis.reduce_channels(a, "abs_sum"), [[7.0, 0.0]])
    np.testing.assert_array_equal(vis.reduce_channels(a, "max_abs"), [[4.0, 0.0]])
    np.testing.assert_array_equal(vis.reduce_channels(a, "l2"), [[5.0, 0.0]])
    np.testing.assert_array_equal(vis.reduce_channels(np.eye(2)), np.eye(2))  # (H, W): unchanged
    with pytest.raises(ValueError, match="Received: reduce='mean'"):
        vis.reduce_channels(a, "mean")


def test_clip_quantile_per_map():
    a = np.array([[[0.0, 1.0, 2.0, 100.0]], [[0.0, -1.0, -2.0, -3.0]]])  # (2, 1, 4)
    out = vis.clip_quantile(a, 0.5)  # per-map median of |a|: 1.5 and 1.5
    np.testing.assert_allclose(out, [[[0.0, 1.0, 1.5, 1.5]], [[0.0, -1.0, -1.5, -1.5]]])
    np.testing.assert_array_equal(vis.clip_quantile(a, 1.0), a)
    with pytest.raises(ValueError, match="Received: q=0"):
        vis.clip_quantile(a, 0)


def test_heatmap_is_symmetric_around_zero():
    a = np.array([[-2.0, 0.0, 1.0]])[..., None]  # one map (1, 3, 1); max |a| = 2
    expected = matplotlib.colormaps["seismic"](np.array([0.0, 0.5, 0.75]))[:, :3]
    np.testing.assert_allclose(vis.heatmap(a)[0], expected)
    batch = np.stack([a, 10 * a])  # each map scaled by its own max-abs
    np.testing.assert_allclose(vis.heatmap(batch)[1], vis.heatmap(a))
    np.testing.assert_allclose(vis.heatmap(np.zeros((2, 2, 1)))[0, 0], expected[1])  # all zero: centre
    clipped = vis.heatmap(np.array([[-100.0, 0.0, 1.0, 1.0]])[..., None], clip_quantile=0.5)
    np.testing.assert_allclose(clipped[0, 0], matplotlib.colormaps["seismic"](0.0)[:3])
    np.testing.assert_allclose(clipped[0, 2], matplotlib.colormaps["seismic"](1.0)[:3])


def test_graymap_project_and_overlay_by_hand():
    a = np.array([[[-2.0], [1.0]]])  # (1, 2, 1)
    np.testing.assert_allclose(vis.graymap(a)[0], [[1.0] * 3, [0.5] * 3])
    np.testing.assert_allclose(vis.project(a)[0, :, 0], [0.0, 0.75])  # x / (2 * 2) + 1/2
    img = np.array([[[0.0], [4.0]]])
    np.testing.assert_allclose(vis.to_image(img)[0], [[0.0] * 3, [1.0] * 3])
    np.testing.assert_allclose(vis.overlay(a, img, alpha=0.0), vis.to_image(img))
    full = vis.overlay(a, img, alpha=1.0)  # |normalized map| is 1 and 0.5
    np.testing.assert_allclose(full[0, 0], vis.heatmap(a)[0, 0])
    np.testing.assert_allclose(full[0, 1], 0.5 * 1.0 + 0.5 * vis.heatmap(a)[0, 1])
    with pytest.raises(ValueError, match="Received: alpha=2"):
        vis.overlay(a, img, alpha=2)


def test_output_kind_read_from_the_capability_flags():
    assert {n for n in kp.list_analyzers() if vis.output_kind(n) == "signal"} == {
        "pattern.net", "deconvnet", "guided_backprop", "input"}
    assert vis.output_kind("pattern.attribution") == "attribution"
    assert vis.render(np.ones((1, 2, 2, 1)), "signal").shape == (1, 2, 2, 3)
    with pytest.raises(ValueError, match="Received: kind='heat'"):
        vis.render(np.ones((1, 2, 2, 1)), "heat")


def _panel(rgb, ax, fig, row, col, n_rows, n_cols, size, gap):
    """Centre pixel of panel (row, col) of the mosaic drawn in ``ax``."""
    x0, y0, x1, y1 = ax.get_window_extent().extents
    height = rgb.shape[0]
    mosaic_w, mosaic_h = n_cols * (size + gap) - gap, n_rows * (size + gap) - gap
    cx = x0 + (col * (size + gap) + size / 2) / mosaic_w * (x1 - x0)
    cy = y1 - (row * (size + gap) + size / 2) / mosaic_h * (y1 - y0)
    return rgb[int(height - cy), int(cx)]


def test_plot_grid_png(tmp_path):
    size, n = 12, 3
    x = np.random.default_rng(0).normal(size=(n, size, size, 1))
    pos = np.ones((n, size, size, 1))
    maps = {"gradient": pos, "lrp.epsilon": -pos, "pattern.net": pos}
    fig = vis.plot_grid(maps, images=x, predicted=[0, 1, 2], target=[0, 1, 1],
                        class_names=["a", "b", "c"], title="epoch 1", colorbar=True)
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3]
    ax = fig.axes[0]
    centre = [[_panel(rgb, ax, fig, r, c, 4, n, size, 1) for c in range(n)] for r in range(4)]
    red, blue, gray = centre[1][0], centre[2][0], centre[3][0]
    top, bottom = (np.round(255 * np.array(matplotlib.colormaps["seismic"](v)[:3])) for v in (1.0, 0.0))
    np.testing.assert_allclose(red, top, atol=2)  # +max: the top of seismic (dark red)
    np.testing.assert_allclose(blue, bottom, atol=2)  # -max: the bottom (dark blue)
    assert abs(int(gray[0]) - int(gray[2])) < 5 and gray[0] > 200  # signal +max: white (project)
    assert not np.array_equal(red, blue)
    matplotlib.pyplot.close(fig)

    path = tmp_path / "grid.png"
    assert vis.plot_grid(maps, images=x, predicted=[0, 1, 2], title="epoch 1", path=path, dpi=50) is None
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    png = matplotlib.image.imread(path)
    # Width: 3 cells of 1.6 in + 1.25 in of labels; height: 4 cells + titles (2 lines) + margins.
    expected = (50 * (4 * 1.6 + 0.15 * 2 + 0.35 + 0.05), 50 * (3 * 1.6 + 1.25))
    assert np.abs(np.array(png.shape[:2]) - expected).max() <= 1  # pixels round either way


def test_plot_grid_rows_of_pictures_still_works(tmp_path):
    rows = [[vis.project(np.ones((5, 5, 1))), vis.heatmap(np.ones((5, 5, 1)))], [np.zeros((5, 5))]]
    path = tmp_path / "rows.png"
    vis.plot_grid(rows, row_labels=["a", "b"], col_labels=["input", "map"], path=str(path))
    assert matplotlib.image.imread(path).shape[2] in (3, 4)
    with pytest.raises(ValueError, match="at least one method"):
        vis.plot_grid({})
