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


# ------------------------------------------------------------------------------- more by hand
def test_normalize_symmetric_by_hand():
    a = np.array([[[-4.0], [1.0], [2.0]]])  # (1, 3, 1): one map
    np.testing.assert_array_equal(vis.normalize_symmetric(a), [[-1.0, 0.25, 0.5]])
    # clip at the median of |a| (2) first, then scale by 2
    np.testing.assert_array_equal(vis.normalize_symmetric(a, clip_quantile=0.5), [[-1.0, 0.5, 1.0]])
    batch = np.stack([a, 0 * a, -3 * a])  # per map; the all-zero map stays 0
    np.testing.assert_array_equal(vis.normalize_symmetric(batch),
                                  [[[-1.0, 0.25, 0.5]], [[0.0, 0.0, 0.0]], [[1.0, -0.25, -0.5]]])
    two = np.array([[[1.0, -3.0], [2.0, 2.0]]])  # (1, 2, 2): channels summed, then abs-max
    np.testing.assert_array_equal(vis.normalize_symmetric(two), [[-0.5, 1.0]])
    np.testing.assert_array_equal(vis.normalize_symmetric(two, reduce="abs_sum"), [[1.0, 1.0]])
    np.testing.assert_array_equal(vis.graymap(two, reduce="max_abs")[..., 0], [[1.0, 2 / 3]])


def test_to_image_by_hand():
    np.testing.assert_array_equal(vis.to_image(np.array([[1.0, 3.0]])), [[[0.0] * 3, [1.0] * 3]])  # (H, W)
    rgb = np.array([[[0.0, 2.0, 4.0], [4.0, 4.0, 4.0]]])  # (1, 2, 3): one min-max over all channels
    np.testing.assert_array_equal(vis.to_image(rgb), rgb / 4)
    two = np.array([[[[1.0, 1.0], [3.0, -1.0], [0.0, 0.0]]]])  # (1, 1, 3, 2): channels summed to gray
    np.testing.assert_array_equal(vis.to_image(two)[0, 0, :, 0], [1.0, 1.0, 0.0])
    np.testing.assert_array_equal(vis.to_image(np.full((2, 2, 2, 1), 7.0)), np.zeros((2, 2, 2, 3)))
    assert vis.signal_image is vis.project
    np.testing.assert_array_equal(vis.project(np.array([[0.0, -1.0, 4.0]])), [[0.5, 0.375, 1.0]])


def test_render_signal_with_two_channels_by_hand():
    maps = np.array([[[[1.0, 1.0], [-1.0, -3.0]]]])  # (1, 1, 2, 2): sums 2 and -4
    expected = np.repeat(np.array([[[0.75, 0.0]]])[..., None], 3, axis=-1)  # x / (2 * 4) + 1/2
    np.testing.assert_array_equal(vis.render(maps, "signal"), expected)
    rgb_maps = np.array([[[[1.0, -2.0, 0.0]]]])  # three channels: projected as they are
    np.testing.assert_array_equal(vis.render(rgb_maps, "signal"), [[[[0.75, 0.0, 0.5]]]])


def test_output_kind_of_instances_classes_and_unknowns(small_mlp):
    analyzer = kp.create_analyzer("pattern.net", small_mlp)
    assert vis.output_kind(analyzer) == vis.output_kind("pattern.net") == "signal"
    assert vis.output_kind(kp.create_analyzer("lrp.z", small_mlp)) == "attribution"
    assert vis.output_kind("no.such.method") == "attribution"

    class Odd:
        output_kind = "colour"

    assert vis.output_kind(Odd) == "attribution"


def test_overlay_refuses_other_spatial_shapes():
    with pytest.raises(ValueError, match=r"same spatial shape. Received: maps \(1, 2, 2, 1\) and images "
                                         r"\(1, 3, 3, 1\)"):
        vis.overlay(np.ones((1, 2, 2, 1)), np.ones((1, 3, 3, 1)))


def test_plot_grid_labels_and_kinds():
    pos = np.ones((2, 4, 4, 1))
    fig = vis.plot_grid({"gradient": pos}, kinds={"gradient": "signal"}, predicted=[1, 7],
                        target=[0, 1], class_names=["cat", "dog"])
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["#0\npred dog\ntrue cat", "#1\npred 7\ntrue dog", "gradient\n(signal)"]
    assert len(fig.axes) == 1  # no colour bar unless asked
    matplotlib.pyplot.close(fig)
    fig = vis.plot_grid({"gradient": pos, "pattern.net": pos}, colorbar=True, titles=["a", "b"])
    assert [t.get_text() for t in fig.axes[0].texts] == ["a", "b", "gradient\n(attribution)",
                                                         "pattern.net\n(signal)"]
    assert len(fig.axes) == 2  # the colour bar: one attribution row
    matplotlib.pyplot.close(fig)


def test_as_rgb_by_hand():
    np.testing.assert_array_equal(vis._as_rgb(np.array([[2.0, 4.0]]))[..., 0], [[0.0, 1.0]])
    np.testing.assert_array_equal(vis._as_rgb(np.array([[[-1.0, 0.5, 2.0]]])), [[[0.0, 0.5, 1.0]]])
    np.testing.assert_array_equal(vis._as_rgb(np.full((2, 2, 1), 3.0)), np.zeros((2, 2, 3)))


@pytest.mark.parametrize("size, row_labels", [
    (24, ["vertical bar\n(pred horizontal bar)", "b"]),  # the demo's row labels
    (6, None),
])
def test_plot_grid_text_stays_inside_the_figure(size, row_labels):
    rows = [[np.zeros((size, size))] * 2] * 4
    fig = vis.plot_grid(rows, row_labels=row_labels, col_labels=["input", "gradient"])
    fig.canvas.draw()
    box = fig.bbox
    for text in fig.axes[0].texts:
        extent = text.get_window_extent()
        assert extent.x0 >= box.x0 and extent.y1 <= box.y1, (text.get_text(), extent, box)
    matplotlib.pyplot.close(fig)
