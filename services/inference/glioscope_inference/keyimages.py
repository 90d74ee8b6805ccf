"""Key images (axial, coronal, sagittal PNGs) through the tumour centroid, Pillow + numpy only.

Radiological convention: axial and coronal show the patient's right on the image's left; axial has
anterior at the top, coronal and sagittal superior at the top, sagittal anterior on the left.

Each PNG is the slice in a black frame: an orientation letter at the middle of each edge (in the
frame, so no anatomy is hidden) and, below the slice, a legend naming each label drawn in that slice
with its colour (the model metadata's name and colour). A label absent from the slice is not listed,
so the legend says exactly what the picture shows; a slice without any label says so.
"""

from __future__ import annotations

import io
import textwrap
from dataclasses import dataclass

import nibabel as nib
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from glioscope_common.model_metadata import ModelMetadata

__all__ = [
    "VIEWS",
    "KeyImage",
    "LegendEntry",
    "ViewSpec",
    "edge_markers",
    "render_key_image_panels",
    "render_key_images",
    "to_ras",
]

ALPHA = 0.45
MIN_SIZE_PX = 256
FRAME_COLOUR = (0, 0, 0)
TEXT_COLOUR = (255, 255, 255)
NO_LABEL_TEXT = "No segmented label in this slice"

# The letter at the (negative end, positive end) of each RAS axis: 0 left-right, 1 posterior-anterior,
# 2 inferior-superior.
AXIS_LETTERS: tuple[tuple[str, str], ...] = (("L", "R"), ("P", "A"), ("I", "S"))

Colour = tuple[int, int, int]
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
Box = tuple[int, int, int, int]  # left, top, right, bottom (right and bottom exclusive)


@dataclass(frozen=True)
class ViewSpec:
    """A plane through the RAS grid. Rows run along `row_axis` from its positive end (top) to its
    negative end; columns along `col_axis` from its positive end (left) to its negative end."""

    name: str
    fixed_axis: int
    row_axis: int
    col_axis: int


VIEWS: tuple[ViewSpec, ...] = (
    ViewSpec("axial", fixed_axis=2, row_axis=1, col_axis=0),  # rows A -> P, columns R -> L
    ViewSpec("coronal", fixed_axis=1, row_axis=2, col_axis=0),  # rows S -> I, columns R -> L
    ViewSpec("sagittal", fixed_axis=0, row_axis=2, col_axis=1),  # rows S -> I, columns A -> P
)


@dataclass(frozen=True)
class LegendEntry:
    value: int
    name: str
    colour: Colour
    swatch: Box


@dataclass(frozen=True)
class KeyImage:
    """One rendered view and where its parts are (for the PNG and for tests)."""

    name: str
    rgb: np.ndarray  # [rows, cols, 3] uint8, the whole picture
    image_box: Box  # the slice inside the frame
    markers: dict[str, tuple[str, Box]]  # edge ("top", "bottom", "left", "right") -> (letter, text box)
    legend: list[LegendEntry]


def to_ras(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reorder/flip voxel axes so that axis 0 grows towards R, 1 towards A, 2 towards S (nearest
    orientation for oblique grids); returns (data, spacing per new axis)."""
    ornt = nib.orientations.io_orientation(affine)
    data = nib.orientations.apply_orientation(data, ornt)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    new_spacing = np.empty(3)
    for axis, (target, _flip) in enumerate(ornt):
        new_spacing[int(target)] = spacing[axis]
    return data, new_spacing


def edge_markers(view: ViewSpec) -> dict[str, str]:
    """The patient direction each image edge faces, from the same spec that cuts the slice."""
    row_neg, row_pos = AXIS_LETTERS[view.row_axis]
    col_neg, col_pos = AXIS_LETTERS[view.col_axis]
    return {"top": row_pos, "bottom": row_neg, "left": col_pos, "right": col_neg}


def _plane(volume: np.ndarray, view: ViewSpec, index: int) -> np.ndarray:
    """[rows, cols] of the view: index 0 of each image axis is the most R / A / S voxel."""
    plane = np.take(volume, index, axis=view.fixed_axis)  # the two other axes, in increasing order
    if view.row_axis > view.col_axis:
        plane = plane.T
    return plane[::-1, ::-1]


def _png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb, mode="RGB").save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def _resize(array: np.ndarray, size: tuple[int, int], resample: int) -> np.ndarray:
    image = Image.fromarray(array)
    return np.asarray(image.resize(size, resample=resample))


def _compose(
    background: np.ndarray, labels: np.ndarray, pixel_mm: tuple[float, float], colours: dict[int, Colour]
) -> tuple[np.ndarray, list[int]]:
    """background [rows, cols] in [0, 1], labels [rows, cols] -> (RGB uint8, physically proportioned;
    the label values drawn, in the metadata's order)."""
    rows, cols = background.shape
    height_mm, width_mm = rows * pixel_mm[0], cols * pixel_mm[1]
    scale = max(1.0, MIN_SIZE_PX / max(1e-6, min(height_mm, width_mm)))
    size = (max(1, int(round(width_mm * scale))), max(1, int(round(height_mm * scale))))
    grey = _resize((background * 255).astype(np.uint8), size, Image.BILINEAR).astype(np.float32)
    lab = _resize(labels.astype(np.uint8), size, Image.NEAREST)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    drawn: list[int] = []
    for value, colour in colours.items():
        region = lab == value
        if not region.any():
            continue
        drawn.append(value)
        colour_arr = np.asarray(colour, dtype=np.float32)
        rgb[region] = (1 - ALPHA) * rgb[region] + ALPHA * colour_arr
        contour = region & ~ndimage.binary_erosion(region, iterations=1, border_value=0)
        rgb[contour] = colour_arr
    return np.clip(rgb, 0, 255).astype(np.uint8), drawn


def _font(slice_width_px: int) -> Font:
    """Pillow's bundled default font, sized to stay legible when the PDF shrinks the picture."""
    return ImageFont.load_default(size=max(12, slice_width_px // 22))


def _text_size(draw: ImageDraw.ImageDraw, text: str, font: Font) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return int(np.ceil(right - left)), int(np.ceil(bottom - top))


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: Font, width_px: int) -> list[str]:
    """Word-wrap `text` to lines no wider than `width_px` (a single long word stays whole)."""
    for chars in range(len(text), 0, -1):
        lines = textwrap.wrap(text, width=chars) or [""]
        if all(_text_size(draw, line, font)[0] <= width_px for line in lines):
            return lines
    return textwrap.wrap(text, width=1)


def _frame(
    name: str,
    slice_rgb: np.ndarray,
    letters: dict[str, str],
    drawn: list[int],
    names: dict[int, str],
    colours: dict[int, Colour],
) -> KeyImage:
    """The slice in a black frame with an orientation letter at each edge and the legend below."""
    height, width = slice_rgb.shape[:2]
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    font = _font(width)
    letter_px = max(_text_size(probe, letter, font)[i] for letter in letters.values() for i in (0, 1))
    margin = letter_px + 8
    line_px = _text_size(probe, "Ag", font)[1] + 4
    swatch_px = line_px - 4
    total_width = width + 2 * margin
    text_width = total_width - 2 * margin - swatch_px - 6

    entries = [(value, _wrap(probe, names[value], font, text_width)) for value in drawn]
    legend_lines = sum(len(lines) for _, lines in entries) if entries else 1
    total_height = height + 2 * margin + legend_lines * line_px + margin // 2

    canvas = Image.new("RGB", (total_width, total_height), FRAME_COLOUR)
    canvas.paste(Image.fromarray(slice_rgb, mode="RGB"), (margin, margin))
    draw = ImageDraw.Draw(canvas)
    image_box = (margin, margin, margin + width, margin + height)

    centres = {
        "top": (margin + width / 2, margin / 2),
        "bottom": (margin + width / 2, margin + height + margin / 2),
        "left": (margin / 2, margin + height / 2),
        "right": (margin + width + margin / 2, margin + height / 2),
    }
    markers: dict[str, tuple[str, Box]] = {}
    for edge, letter in letters.items():
        x, y = centres[edge]
        draw.text((x, y), letter, fill=TEXT_COLOUR, font=font, anchor="mm")
        left, top, right, bottom = draw.textbbox((x, y), letter, font=font, anchor="mm")
        markers[edge] = (letter, (int(left), int(top), int(np.ceil(right)), int(np.ceil(bottom))))

    legend: list[LegendEntry] = []
    y = margin + height + margin
    if not entries:
        draw.text((margin, y), NO_LABEL_TEXT, fill=TEXT_COLOUR, font=font)
    for value, lines in entries:
        swatch = (margin, y + 2, margin + swatch_px, y + 2 + swatch_px)
        draw.rectangle((swatch[0], swatch[1], swatch[2] - 1, swatch[3] - 1), fill=colours[value])
        for i, line in enumerate(lines):
            draw.text((margin + swatch_px + 6, y + i * line_px), line, fill=TEXT_COLOUR, font=font)
        legend.append(LegendEntry(value=value, name=names[value], colour=colours[value], swatch=swatch))
        y += len(lines) * line_px
    return KeyImage(name=name, rgb=np.asarray(canvas), image_box=image_box, markers=markers, legend=legend)


def render_key_image_panels(
    background: np.ndarray,
    label_map: np.ndarray,
    affine: np.ndarray,
    metadata: ModelMetadata,
) -> list[KeyImage]:
    """The three views through the tumour centroid (image centre if none), in VIEWS order."""
    if background.shape != label_map.shape:
        raise ValueError("background and label map must share a grid")
    bg, spacing = to_ras(np.asarray(background, dtype=np.float32), np.asarray(affine, dtype=float))
    lab, _ = to_ras(np.asarray(label_map), np.asarray(affine, dtype=float))

    values = bg[bg != 0] if np.any(bg != 0) else bg.ravel()
    lo, hi = np.percentile(values, [1.0, 99.0]) if values.size else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1.0
    bg = np.clip((bg - lo) / (hi - lo), 0.0, 1.0)

    if np.any(lab > 0):
        centre = np.round(np.argwhere(lab > 0).mean(axis=0)).astype(int)
    else:
        centre = np.array(lab.shape) // 2
    colours: dict[int, Colour] = {label.value: tuple(label.color_rgb) for label in metadata.labels}
    names = {label.value: label.name for label in metadata.labels}

    panels = []
    for view in VIEWS:
        index = int(centre[view.fixed_axis])
        pixel_mm = (float(spacing[view.row_axis]), float(spacing[view.col_axis]))
        slice_rgb, drawn = _compose(_plane(bg, view, index), _plane(lab, view, index), pixel_mm, colours)
        panels.append(_frame(view.name, slice_rgb, edge_markers(view), drawn, names, colours))
    return panels


def render_key_images(
    background: np.ndarray,
    label_map: np.ndarray,
    affine: np.ndarray,
    metadata: ModelMetadata,
) -> dict[str, bytes]:
    """PNG bytes for "axial", "coronal", "sagittal" through the tumour centroid (image centre if none)."""
    return {panel.name: _png(panel.rgb) for panel in render_key_image_panels(background, label_map, affine, metadata)}
