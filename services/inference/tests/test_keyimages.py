from __future__ import annotations

import io

import numpy as np
from PIL import Image

from glioscope_inference.keyimages import render_key_images


def _decode(png: bytes) -> np.ndarray:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_radiological_orientation(tiny_metadata):
    """A lesion in the patient's RIGHT (RAS x > 0), anterior (y > 0), superior (z > 0) half."""
    shape = (40, 40, 40)
    affine = np.eye(4)
    affine[:3, 3] = -19.5  # world = index - 19.5
    background = np.full(shape, 100.0, np.float32)
    labels = np.zeros(shape, np.uint8)
    labels[28:34, 28:34, 28:34] = 3  # x, y, z in (8.5, 14.5): right, anterior, superior
    images = render_key_images(background, labels, affine, tiny_metadata)
    assert set(images) == {"axial", "coronal", "sagittal"}
    red = {}
    for view, png in images.items():
        rgb = _decode(png).astype(int)
        assert min(rgb.shape[:2]) >= 256
        mask = (rgb[..., 0] > 150) & (rgb[..., 1] < 100)
        assert mask.any(), view
        rows, cols = np.nonzero(mask)
        red[view] = (rows.mean() / rgb.shape[0], cols.mean() / rgb.shape[1])
    # axial: patient right on image LEFT, anterior at the TOP
    assert red["axial"][1] < 0.5 and red["axial"][0] < 0.5
    # coronal: patient right on image left, superior at the top
    assert red["coronal"][1] < 0.5 and red["coronal"][0] < 0.5
    # sagittal: anterior on the left, superior at the top
    assert red["sagittal"][1] < 0.5 and red["sagittal"][0] < 0.5


def test_flipped_affine_gives_same_picture(tiny_metadata):
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
    for view in a:
        np.testing.assert_array_equal(_decode(a[view]), _decode(b[view]))


def test_no_tumour_uses_centre(tiny_metadata):
    images = render_key_images(np.ones((12, 14, 10), np.float32), np.zeros((12, 14, 10), np.uint8), np.eye(4), tiny_metadata)
    assert all(len(png) > 50 for png in images.values())
