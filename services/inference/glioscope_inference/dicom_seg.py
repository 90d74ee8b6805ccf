"""Label map <-> DICOM Segmentation (highdicom), on the grid of a source image series.

The label map is indexed [i, j, k] like `glioscope_common.volume.Volume` data for
`read_series(source_datasets)`: i column, j row, k slice sorted along the slice normal. SEG frames
follow the sorted source instances, one BINARY segment per label in the model metadata.

Each segment carries TrackingID "glioscope-label-<value>" so `read_segmentation` restores the
original label values even when they are not numbered 1..N.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from glioscope_common.dicom.read import series_geometry
from glioscope_common.errors import UnprocessableInput
from glioscope_common.model_metadata import ModelMetadata

__all__ = ["build_segmentation", "read_segmentation", "warm_up"]

_TRACKING_ID = "glioscope-label-{}"
_TRACKING_RE = re.compile(r"^glioscope-label-(\d+)$")


def _coded(concept) -> hd.sr.CodedConcept:  # glioscope_common.model_metadata.CodedConcept
    return hd.sr.CodedConcept(value=concept.value, scheme_designator=concept.scheme_designator, meaning=concept.meaning)


def _source_order(source_datasets: Sequence[Dataset], label_map_shape: tuple[int, ...]) -> list[Dataset]:
    sorted_sources, _ = series_geometry(source_datasets)
    if len(sorted_sources) == 1 and int(getattr(sorted_sources[0], "NumberOfFrames", 1) or 1) > 1:
        raise UnprocessableInput("DICOM-SEG for multi-frame source images is not supported")
    first = sorted_sources[0]
    expected = (int(first.Columns), int(first.Rows), len(sorted_sources))
    if tuple(label_map_shape) != expected:
        raise ValueError(f"label map shape {tuple(label_map_shape)} does not match the source series grid {expected}")
    return sorted_sources


def build_segmentation(
    label_map: np.ndarray,
    source_datasets: Sequence[Dataset],
    metadata: ModelMetadata,
    *,
    series_number: int = 900,
    series_description: str = "Glioscope tumour segmentation",
    content_creator: str = "Glioscope",
    manufacturer: str = "Glioscope",
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
    algorithm_type: str = "AUTOMATIC",
) -> hd.seg.Segmentation:
    """A BINARY DICOM-SEG of `label_map` (uint8, [i, j, k] on the source series grid).

    One segment per label of `metadata.labels` (all of them, also empty ones, so a reader always
    sees the full label set); empty frames are omitted. Values not in the metadata raise ValueError.
    Pass `series_instance_uid` and `sop_instance_uid` to make a re-run write the same instance (idempotent jobs).
    `algorithm_type` "SEMIAUTOMATIC" marks a model output corrected by a person (edited versions).
    """
    label_map = np.asarray(label_map)
    if label_map.ndim != 3:
        raise ValueError(f"label map must be 3-D, got shape {label_map.shape}")
    sources = _source_order(source_datasets, label_map.shape)
    labels = sorted(metadata.labels, key=lambda info: info.value)
    if not labels:
        raise ValueError("model metadata defines no labels")

    if label_map.size and (label_map.min() < 0 or label_map.max() > 255):
        raise ValueError("label map contains values outside 0..255 that the model metadata does not define")
    counts = np.bincount(label_map.ravel().astype(np.uint8, copy=False), minlength=256)
    present = {int(v) for v in np.flatnonzero(counts)} - {0}
    unknown = sorted(present - {info.value for info in labels})
    if unknown:
        raise ValueError(f"label map contains values {unknown} that the model metadata does not define")

    # label value -> segment number 1..N, frames (k, row j, column i)
    lut = np.zeros(256, dtype=np.uint8)
    for number, info in enumerate(labels, start=1):
        lut[info.value] = number
    segments = lut[label_map.astype(np.uint8)].transpose(2, 1, 0)

    algorithm = hd.AlgorithmIdentificationSequence(
        name=metadata.algorithm_name,
        family=codes.cid7162.ArtificialIntelligence,
        version=metadata.algorithm_version,
    )
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=info.name[:64],
            segmented_property_category=_coded(info.category),
            segmented_property_type=_coded(info.type),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues(algorithm_type),
            algorithm_identification=algorithm,
            tracking_uid=generate_uid(entropy_srcs=[sop_instance_uid, str(info.value)]) if sop_instance_uid else generate_uid(),
            tracking_id=_TRACKING_ID.format(info.value),
            display_color=hd.color.CIELabColor.from_rgb(*info.color_rgb),
        )
        for number, info in enumerate(labels, start=1)
    ]
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=segments,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=series_instance_uid or generate_uid(),
        series_number=series_number,
        sop_instance_uid=sop_instance_uid or generate_uid(),
        instance_number=1,
        manufacturer=manufacturer,
        manufacturer_model_name=metadata.name[:64],
        software_versions=metadata.algorithm_version,
        device_serial_number=metadata.version[:64] or "1",
        content_description=f"{metadata.name} {metadata.version}"[:64],
        # a single-component person name needs a trailing caret to be unambiguous
        content_creator_name=content_creator if "^" in content_creator else f"{content_creator}^",
        content_label="TUMOUR_SEG",
        series_description=series_description,
        omit_empty_frames=True,
    )
    return seg


def read_segmentation(seg_dataset: Dataset, source_datasets: Sequence[Dataset]) -> np.ndarray:
    """A DICOM-SEG (as written by `build_segmentation`, or any BINARY/LABELMAP/FRACTIONAL SEG without
    overlapping segments) -> uint8 label map [i, j, k] on the grid of `read_series(source_datasets)`.

    Segments with a Glioscope TrackingID get their original label value, others their segment number.
    """
    seg = seg_dataset if isinstance(seg_dataset, hd.seg.Segmentation) else hd.seg.Segmentation.from_dataset(seg_dataset)
    sorted_sources, _ = series_geometry(source_datasets)
    if len(sorted_sources) == 1 and int(getattr(sorted_sources[0], "NumberOfFrames", 1) or 1) > 1:
        raise UnprocessableInput("DICOM-SEG for multi-frame source images is not supported")
    uids = [str(ds.SOPInstanceUID) for ds in sorted_sources]
    referenced = {str(uid) for _, _, uid in seg.get_source_image_uids()}
    if not referenced & set(uids):
        raise UnprocessableInput("the segmentation does not reference the given source series")

    numbers = [int(n) for n in seg.segment_numbers]
    lut = np.zeros(max(numbers, default=0) + 1, dtype=np.uint8)
    for number in numbers:
        description = seg.get_segment_description(number)
        match = _TRACKING_RE.match(str(description.tracking_id or ""))
        value = int(match.group(1)) if match else number
        if value > 255:
            raise UnprocessableInput(f"segment {number} maps to label {value} > 255")
        lut[number] = value

    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=uids,
        combine_segments=True,
        relabel=False,
        assert_missing_frames_are_empty=True,
    )  # (k, rows j, columns i) of segment numbers
    return np.ascontiguousarray(lut[pixels.astype(np.intp)].transpose(2, 1, 0))


def warm_up(metadata: ModelMetadata) -> None:
    """Build a SEG on a tiny synthetic series. highdicom loads its standard tables (about half a
    second) the first time a process builds a SEG: a worker calls this at start, not in a job."""
    from glioscope_common.dicom.write import write_series
    from glioscope_common.volume import Volume

    sources = write_series(
        Volume(np.ones((4, 4, 2), dtype=np.float32), np.eye(4)),
        study_instance_uid=generate_uid(), series_instance_uid=None, series_number=1,
        series_description="warm-up", patient_id="WARMUP", patient_name="Warm^Up",
        study_date="20000101", study_time="000000", frame_of_reference_uid=generate_uid(),
    )
    labels = np.zeros((4, 4, 2), dtype=np.uint8)
    labels[1, 1, 0] = metadata.labels[0].value
    build_segmentation(labels, sources, metadata)
