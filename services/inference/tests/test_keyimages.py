from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from glioscope_inference.keyimages import (
    VIEWS,
    KeyImage,
    edge_markers,
    render_key_image_panels,
    render_key_images,
)


def _decode(png: bytes) -> np.ndarray:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def _crop(rgb: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    left, top, right, bottom = box
    return rgb[top:bottom, left:right]


def _right_anterior_superior_lesion(label: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A lesion in the patient's RIGHT (RAS x > 0), anterior (y > 0), superior (z > 0) half."""
    shape = (40, 40, 40)
    affine = np.eye(4)
    affine[:3, 3] = -19.5  # world = index - 19.5
    background = np.full(shape, 100.0, np.float32)
    labels = np.zeros(shape, np.uint8)
    labels[28:34, 28:34, 28:34] = label  # x, y, z in (8.5, 14.5): right, anterior, superior
    return background, labels, affine


def _text_pixels(rgb: np.ndarray) -> np.ndarray:
    """White (anti-aliased) text on the black frame."""
    return rgb.min(axis=2) > 128


def _lesion_position(panel: KeyImage, colour: tuple[int, int, int]) -> tuple[float, float]:
    """(row, column) of the lesion's centroid as fractions of the slice (the frame left out)."""
    rgb = _crop(panel.rgb, panel.image_box).astype(int)
    mask = np.all(np.abs(rgb - np.asarray(colour)) < 60, axis=2)
    assert mask.any(), panel.name
    rows, cols = np.nonzero(mask)
    return rows.mean() / rgb.shape[0], cols.mean() / rgb.shape[1]


def test_radiological_orientation(tiny_metadata):
    background, labels, affine = _right_anterior_superior_lesion()
    panels = {p.name: p for p in render_key_image_panels(background, labels, affine, tiny_metadata)}
    assert set(panels) == {"axial", "coronal", "sagittal"}
    red = {name: _lesion_position(panel, (255, 0, 0)) for name, panel in panels.items()}
    for panel in panels.values():
        assert min(_crop(panel.rgb, panel.image_box).shape[:2]) >= 256
    # axial: patient right on image LEFT, anterior at the TOP
    assert red["axial"][1] < 0.5 and red["axial"][0] < 0.5
    # coronal: patient right on image left, superior at the top
    assert red["coronal"][1] < 0.5 and red["coronal"][0] < 0.5
    # sagittal: anterior on the left, superior at the top
    assert red["sagittal"][1] < 0.5 and red["sagittal"][0] < 0.5


def test_edge_markers_per_view():
    markers = {view.name: edge_markers(view) for view in VIEWS}
    assert markers["axial"] == {"top": "A", "bottom": "P", "left": "R", "right": "L"}
    assert markers["coronal"] == {"top": "S", "bottom": "I", "left": "R", "right": "L"}
    assert markers["sagittal"] == {"top": "S", "bottom": "I", "left": "A", "right": "P"}


def test_markers_name_the_side_the_lesion_is_on(tiny_metadata):
    """The lesion is right, anterior and superior: in every view it lies towards the edges marked
    with those letters, and each letter is drawn in the frame at its edge."""
    background, labels, affine = _right_anterior_superior_lesion()
    for panel in render_key_image_panels(background, labels, affine, tiny_metadata):
        row, col = _lesion_position(panel, (255, 0, 0))
        letters = {edge: letter for edge, (letter, _box) in panel.markers.items()}
        assert letters == edge_markers(next(v for v in VIEWS if v.name == panel.name))
        assert letters["top" if row < 0.5 else "bottom"] in {"R", "A", "S"}, panel.name
        assert letters["left" if col < 0.5 else "right"] in {"R", "A", "S"}, panel.name

        left, top, right, bottom = panel.image_box
        height, width = panel.rgb.shape[:2]
        for edge, (letter, box) in panel.markers.items():
            x0, y0, x1, y1 = box
            assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height, (panel.name, edge)
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            side = {"top": y1 <= top, "bottom": y0 >= bottom, "left": x1 <= left, "right": x0 >= right}[edge]
            assert side, (panel.name, edge, box, panel.image_box)
            if edge in ("top", "bottom"):
                assert abs(cx - (left + right) / 2) < 3
            else:
                assert abs(cy - (top + bottom) / 2) < 3
            text = _text_pixels(_crop(panel.rgb, box))
            assert text.sum() >= 5, (panel.name, edge, letter)


def test_legend_lists_exactly_the_labels_in_the_slice_with_their_colours(tiny_metadata):
    background, labels, affine = _right_anterior_superior_lesion(label=2)
    labels[30:32, 30:32, 30:32] = 3  # enhancing inside oedema; no necrotic core anywhere
    colours = {label.value: tuple(label.color_rgb) for label in tiny_metadata.labels}
    names = {label.value: label.name for label in tiny_metadata.labels}
    pngs = render_key_images(background, labels, affine, tiny_metadata)
    for panel in render_key_image_panels(background, labels, affine, tiny_metadata):
        np.testing.assert_array_equal(_decode(pngs[panel.name]), panel.rgb)
        assert [entry.value for entry in panel.legend] == [2, 3], panel.name
        _left, _top, _right, image_bottom = panel.image_box
        for entry in panel.legend:
            assert entry.name == names[entry.value] and entry.colour == colours[entry.value]
            x0, y0, x1, y1 = entry.swatch
            assert y0 > image_bottom
            swatch = _crop(panel.rgb, entry.swatch).reshape(-1, 3)
            assert (swatch == np.asarray(colours[entry.value])).all(), (panel.name, entry.value)
            # the name is written beside the swatch
            beside = panel.rgb[y0:y1, x1 : x1 + 200]
            assert _text_pixels(beside).sum() >= 10


def test_legend_leaves_out_a_label_absent_from_the_slice(tiny_metadata):
    """Label 1 exists in the volume but not in the axial slice through the centroid."""
    background, labels, affine = _right_anterior_superior_lesion(label=2)
    labels[5:7, 5:7, 2:4] = 1  # far below the lesion: not in its axial plane
    panels = {p.name: p for p in render_key_image_panels(background, labels, affine, tiny_metadata)}
    assert [entry.value for entry in panels["axial"].legend] == [2]


def test_no_tumour_uses_centre_and_says_so(tiny_metadata):
    shape = (12, 14, 10)
    panels = render_key_image_panels(np.ones(shape, np.float32), np.zeros(shape, np.uint8), np.eye(4), tiny_metadata)
    for panel in panels:
        assert panel.legend == []
        below = panel.rgb[panel.image_box[3] + 1 :]
        assert _text_pixels(below).any(), panel.name  # the "no segmented label" line


def test_long_label_name_wraps_inside_the_picture(tiny_metadata):
    labels_meta = [label.model_copy(update={"name": "Very long label name " * 8}) if label.value == 3 else label
                   for label in tiny_metadata.labels]
    metadata = tiny_metadata.model_copy(update={"labels": labels_meta})
    background, labels, affine = _right_anterior_superior_lesion()
    for panel in render_key_image_panels(background, labels, affine, metadata):
        left, _top, right, bottom = panel.image_box
        legend_band = panel.rgb[bottom:]
        text_cols = np.nonzero(_text_pixels(legend_band).any(axis=0))[0]
        assert text_cols.max() < right + 2, panel.name  # nothing written into the right frame or beyond
        assert np.all(legend_band[-3:] == 0)  # the last line is not cut off


@pytest.mark.parametrize("view", VIEWS, ids=lambda v: v.name)
def test_flipped_affine_gives_same_picture(tiny_metadata, view):
    shape = (30, 30, 30)
    affine = np.eye(4)
    affine[:3, 3] = -14.5
    rng = np.random.default_rng(0)
    background = rng.uniform(0, 100, shape).astype(np.float32)
    labels = np.zeros(shape, np.uint8)
    labels[18:24, 10:14, 15:20] = 2
    flipped = affine.copy()
    flipped[0, 0] = -1.0
    flipped[0, 3] = 14.5  # same world positions with the i axis reversed
    a = render_key_images(background, labels, affine, tiny_metadata)
    b = render_key_images(background[::-1], labels[::-1], flipped, tiny_metadata)
    np.testing.assert_array_equal(_decode(a[view.name]), _decode(b[view.name]))
