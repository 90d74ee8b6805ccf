"""The one segmentation code path, used by the Celery worker and the `glioscope` CLI.

volumes (T1, T1c, T2, FLAIR as Volume, or a subset: glioscope_common.sequence_regions decides what it
supports; a missing sequence is an all-zero channel) -> co-registration to the reference (T1c, FLAIR
without a T1c) -> resampling to
the model grid (axis-aligned RAS at the model spacing over the T1c extent) -> normalisation ->
sliding-window inference -> probabilities resampled back to the T1c grid (linear) -> argmax ->
connected-component clean-up (and the brain mask) -> only the labels the sequences support
(sequence_regions.restrict_labels) -> the final label map on the T1c grid, which is what
the SEG and the NIfTI mask hold -> affine registration to the MNI152 atlas (for the location) ->
measurements of that final label map (measure_delivered), with the model's quality estimate from its
probabilities (glioscope_inference.quality) -> key images (the same labels on the model grid).

A study that is not skull-stripped (image foreground of the T1c over SKULL_STRIPPED_MAX_ML) gets brain
extraction when a BrainExtractor is given (deepbet's networks, `glioscope_inference.brain_extraction`):
on the T1c's native grid, within the "normalise" stage (its own time in timings_s["brain_extraction"]);
the mask, dilated by a few mm, zeroes every channel outside it on the model grid before the z-score
(the model sees BraTS-like input) and removes labels outside it on the T1c grid.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from glioscope_common.errors import UnprocessableInput
from glioscope_common.inference_backend import InferenceBackend
from glioscope_common.job_stages import PIPELINE_STAGES
from glioscope_common.measurements import Measurements
from glioscope_common.model_metadata import ModelMetadata
from glioscope_common.sequence_regions import SequencePlan, delivered_labels, plan_sequences, restrict_labels
from glioscope_common.volume import Volume

from glioscope_common.measurements import AtlasRegistration
from glioscope_inference.atlas import register_to_atlas
from glioscope_inference.brain_extraction import BrainExtractor, dilate_mm
from glioscope_inference.keyimages import render_key_images
from glioscope_inference.measure import measure_delivered
from glioscope_inference.postprocess import clean_labels, probabilities_to_labels
from glioscope_inference.quality import segmentation_quality
from glioscope_inference.registration import coregister_rigid
from glioscope_inference.preprocess import (
    foreground_mask,
    normalise,
    reference_grid,
    resample,
    should_coregister,
    without_constant_background,
)
from glioscope_inference.sliding_window import sliding_window_inference

__all__ = ["SegmentationResult", "segment_study", "STAGES"]

# A skull-stripped adult brain (the model's training domain) is well under this many mL of non-zero
# voxels (1.2-2.4 L); a raw head image is non-zero over its whole field of view (6 L on the real
# TCGA example in ../shared/data/real).
SKULL_STRIPPED_MAX_ML = 3000.0

BRAIN_EXTRACTION_NOTE = ("Skull and neck removed automatically (deepbet brain extraction: the images were not "
                         "skull-stripped); review the brain boundary.")


def looks_skull_stripped(foreground_ml: float) -> bool:
    return foreground_ml <= SKULL_STRIPPED_MAX_ML


def input_warnings(brain_mask: np.ndarray, voxel_mm3: float, brain_extraction: bool = False) -> list[str]:
    """Plain-language reasons why the model may mislabel this input (`brain_extraction`: the brain
    was extracted automatically, which is said instead of "not skull-stripped")."""
    if brain_extraction:
        return [BRAIN_EXTRACTION_NOTE]
    foreground_ml = float(brain_mask.sum()) * voxel_mm3 / 1000.0
    if not looks_skull_stripped(foreground_ml):
        return [
            f"The images do not look skull-stripped ({foreground_ml / 1000:.1f} L of image foreground; a "
            f"skull-stripped brain is under {SKULL_STRIPPED_MAX_ML / 1000:.0f} L). The model was trained on skull-stripped images "
            "and may label tissue outside the brain (scalp, orbits, neck): review the segmentation there."
        ]
    return []


STAGES = PIPELINE_STAGES  # the job stages it reports, in order (glioscope_common.job_stages)


@dataclass
class SegmentationResult:
    label_map: np.ndarray  # uint8 on the reference (T1c) source grid: the delivered labels, all post-processing done
    reference: Volume
    measurements: Measurements
    plan: SequencePlan  # the sequences used, the regions reported
    delivered_metadata: ModelMetadata  # the model's metadata with the delivered labels (the SEG's segments)
    key_images: dict[str, bytes]
    timings_s: dict[str, float]
    model_grid_labels: np.ndarray  # label_map on the model grid (nearest neighbour), for the key images
    model_grid_affine: np.ndarray
    transforms: dict[str, np.ndarray] = field(default_factory=dict)  # series -> world transform applied
    coregistration_note: str = ""
    brain_mask: np.ndarray | None = None  # bool on the T1c grid (deepbet's, not dilated), when brain extraction ran
    brain_ml: float | None = None  # extracted brain volume (before dilation), when brain extraction ran


def _register(image: Volume, brain: np.ndarray) -> AtlasRegistration:
    """The registration to the atlas; a failure of the registration itself is a rejected registration
    (the location is then not available), never a failed job."""
    try:
        return register_to_atlas(image, brain)
    except RuntimeError as exc:  # SimpleITK raises RuntimeError for a registration that cannot proceed
        return AtlasRegistration(world_to_mni=np.eye(4).tolist(), brain_dice=0.0, scales=(0.0, 0.0, 0.0),
                                 accepted=False, note=f"the registration failed ({str(exc).splitlines()[0][:200]})")


def _validate(volumes: Mapping[str, Volume], metadata: ModelMetadata) -> SequencePlan:
    """The plan for the model's channels that are present; refuses a study the rule cannot segment."""
    present = [name for name in metadata.channels if volumes.get(name) is not None]
    plan = plan_sequences(present)
    if not plan.complete and not metadata.accepts_missing_sequences:
        absent = ", ".join(name for name in metadata.channels if name not in present)
        raise UnprocessableInput(f"model {metadata.name} {metadata.version} needs all of {', '.join(metadata.channels)} "
                                 f"(it was not trained to segment without some of them); missing: {absent}")
    for name in present:
        data = volumes[name].data
        if data.size == 0 or min(data.shape) < 2:
            raise UnprocessableInput(f"{name} volume is empty or flat: shape {data.shape}")
        if np.issubdtype(data.dtype, np.floating) and not np.all(np.isfinite(data)):
            raise UnprocessableInput(f"{name} contains NaN or infinite values")
        if not np.any(data):
            raise UnprocessableInput(f"{name} is entirely zero")
    return plan


def segment_study(
    volumes: Mapping[str, Volume],
    metadata: ModelMetadata,
    backend: InferenceBackend,
    *,
    reference: str | None = None,
    coregister: bool | None = None,
    progress: Callable[[str, float], None] | None = None,
    frame_of_reference_uids: Mapping[str, str] | None = None,
    batch_size: int = 2,
    requests_in_flight: int = 1,
    key_image_channel: str | None = None,
    brain_extractor: BrainExtractor | None = None,
) -> SegmentationResult:
    """Segment one study. `coregister`: True always, False never, None decides with
    `preprocess.should_coregister` (same grid, or same FrameOfReferenceUID with agreeing geometry,
    -> skip). `brain_extractor`: used only when the reference does not look skull-stripped; None
    keeps the input as it is (and warns when it is not skull-stripped). `volumes` may lack sequences
    (sequence_regions.plan_sequences says which subsets are segmented); `reference` defaults to the plan's
    (T1c, or FLAIR without a T1c)."""
    plan = _validate(volumes, metadata)
    reference = reference or plan.reference
    if volumes.get(reference) is None:
        raise UnprocessableInput(f"missing sequences: {reference} (the reference grid)")
    present = [name for name in metadata.channels if name in plan.used]
    # A constant background other than 0 (a rescaled or z-scored skull-stripped image) is moved to 0.
    volumes = {name: without_constant_background(volume) if volume is not None else volume
               for name, volume in volumes.items()}
    timings: dict[str, float] = {}

    def report(stage: str, fraction: float) -> None:
        if progress is not None:
            progress(stage, float(fraction))

    @contextmanager
    def stage(name: str):
        report(name, 0.0)
        start = time.perf_counter()
        yield
        timings[name] = round(time.perf_counter() - start, 4)
        report(name, 1.0)

    ref = volumes[reference]
    ref = Volume(np.asarray(ref.data), np.asarray(ref.affine, dtype=float))
    channels = list(metadata.channels)  # the model's input: a channel not in `present` is all zero
    ref_voxel_mm3 = abs(float(np.linalg.det(ref.affine[:3, :3])))
    # "skull-stripped or not", as the input check decides it, on the reference's native grid (cheap)
    extract = brain_extractor is not None and not looks_skull_stripped(
        float(np.count_nonzero(foreground_mask(ref.data[np.newaxis], metadata.normalisation.mask)))
        * ref_voxel_mm3 / 1000.0)
    native_brain: np.ndarray | None = None  # dilated: what cuts channels and labels
    extracted: np.ndarray | None = None
    brain_ml: float | None = None

    # 1. co-registration of every other channel onto the reference (world transforms)
    aligned: dict[str, Volume] = {}
    transforms: dict[str, np.ndarray] = {}
    with stage("coregister"):
        if coregister is None:
            coregister, note = should_coregister(
                {c: volumes[c] for c in dict.fromkeys([*present, reference])}, reference, frame_of_reference_uids
            )
        else:
            note = "forced on" if coregister else "forced off"
        others = [c for c in present if c != reference]
        for n, name in enumerate(others):
            volume = volumes[name]
            if coregister:
                transform = coregister_rigid(volume, ref)
                transforms[name] = transform
                volume = Volume(volume.data, transform @ volume.affine)
            aligned[name] = volume
            report("coregister", (n + 1) / max(1, len(others)))
        aligned[reference] = ref

    # 2. resampling onto the model grid
    with stage("resample"):
        grid_affine, grid_shape = reference_grid(ref, metadata.spacing_mm)
        image = np.empty((len(channels),) + tuple(grid_shape), dtype=np.float32)
        for c, name in enumerate(channels):
            if name in aligned:
                image[c] = resample(aligned[name], grid_affine, grid_shape, order=1)
            else:
                image[c] = 0.0
            report("resample", (c + 1) / len(channels))

    # 3. normalisation
    with stage("normalise"):
        display = key_image_channel or ("FLAIR" if "FLAIR" in present else reference)
        raw_for_display = image[channels.index(display)].copy() if display in present else None
        atlas_channel = "T1" if "T1" in present else (reference if reference in present else present[0])
        raw_for_atlas = image[channels.index(atlas_channel)].copy()
        spec = metadata.normalisation
        if extract:
            assert brain_extractor is not None
            started = time.perf_counter()
            extracted = brain_extractor.extract(ref.data, ref.affine).mask
            brain_ml = float(extracted.sum()) * ref_voxel_mm3 / 1000.0
            low, high = brain_extractor.brain_ml_range
            if not low <= brain_ml <= high:
                raise UnprocessableInput(
                    f"brain extraction failed: {brain_ml:.0f} mL of brain found on the {reference} (plausible: "
                    f"{low:.0f}-{high:.0f} mL); the images are not skull-stripped, so no segmentation is made")
            native_brain = dilate_mm(extracted, ref.affine, brain_extractor.dilate_mm)
            grid_brain = resample(Volume(native_brain.astype(np.float32), ref.affine), grid_affine, grid_shape,
                                  order=0) > 0.5
            image[:, ~grid_brain] = 0.0  # BraTS-like input: the z-score is taken inside the brain
            spec = spec.model_copy(update={"mask": "nonzero"})
            timings["brain_extraction"] = round(time.perf_counter() - started, 4)
            report("normalise", 0.8)
        image, brain_mask = normalise(image, spec)
        if not brain_mask.any():
            raise UnprocessableInput("no foreground voxels found after resampling (empty images?)")

    # 4. sliding-window inference
    with stage("inference"):
        passes = [None, *metadata.flip_axes]  # None: the image as it is; an axis: mirrored along it
        probabilities = None
        for n, axis in enumerate(passes):
            mirrored = image if axis is None else np.flip(image, axis=1 + axis)
            result = sliding_window_inference(
                mirrored, backend, metadata.patch_size, metadata.overlap, batch_size=batch_size,
                progress=lambda f, n=n: report("inference", (n + f) / len(passes)), output_type=metadata.output_type,
                requests_in_flight=requests_in_flight,
            )
            result = result if axis is None else np.flip(result, axis=1 + axis)
            probabilities = result if probabilities is None else np.add(probabilities, result, out=probabilities)
        assert probabilities is not None
        if len(passes) > 1:
            probabilities /= len(passes)
        probabilities = np.ascontiguousarray(probabilities)
        del image

    # 5. post-processing: probabilities back onto the reference grid, labels cleaned there once
    with stage("postprocess"):
        outside = ~brain_mask
        probabilities[0][outside] = 1.0
        probabilities[1:, outside] = 0.0
        quality = segmentation_quality(probabilities, probabilities_to_labels(probabilities, metadata), brain_mask, metadata,
                                       regions=plan.regions)
        report("postprocess", 0.3)
        back = np.empty((probabilities.shape[0],) + ref.shape, dtype=np.float32)
        for c in range(probabilities.shape[0]):
            back[c] = resample(
                Volume(probabilities[c], grid_affine), ref.affine, ref.shape, order=1,
                cval=1.0 if c == 0 else 0.0,
            )
        del probabilities
        label_map = probabilities_to_labels(back, metadata)
        del back
        if native_brain is not None:
            label_map[~native_brain] = 0
        label_map = clean_labels(label_map, ref_voxel_mm3)  # after the brain mask: what is left is what is kept
        label_map = restrict_labels(label_map, plan)
        delivered = metadata.model_copy(update={"labels": delivered_labels(metadata.labels, plan)})
        model_labels = resample(Volume(label_map, ref.affine), grid_affine, grid_shape, order=0).astype(np.uint8)

    # 6. the study's registration to the MNI152 atlas, for the tumour's location
    with stage("locate"):
        registration = _register(Volume(raw_for_atlas, grid_affine), brain_mask)
        del raw_for_atlas
        if native_brain is not None and not registration.accepted:
            # the extracted "brain" is not shaped like one: a failed extraction, not a study to label
            raise UnprocessableInput(
                f"brain extraction failed: the extracted brain does not match the brain atlas ({registration.note}); "
                "the images are not skull-stripped, so no segmentation is made")

    # 7. measurements of the delivered label map, on its grid
    with stage("measure"):
        warnings = input_warnings(brain_mask, abs(float(np.linalg.det(grid_affine[:3, :3]))),
                                  brain_extraction=native_brain is not None)
        measurements = measure_delivered(label_map, ref, delivered, registration=registration, input_warnings=warnings,
                                         plan=plan)
        measurements = measurements.model_copy(update={"quality": quality})

    # 8. key images on the model grid
    with stage("key_images"):
        if raw_for_display is None:
            raw_for_display = resample(ref, grid_affine, grid_shape, order=1)
        key_images = render_key_images(raw_for_display, model_labels, grid_affine, delivered)

    return SegmentationResult(
        label_map=label_map,
        reference=ref,
        measurements=measurements,
        plan=plan,
        delivered_metadata=delivered,
        key_images=key_images,
        timings_s=timings,
        model_grid_labels=model_labels,
        model_grid_affine=grid_affine,
        transforms=transforms,
        coregistration_note=note,
        brain_mask=extracted,
        brain_ml=brain_ml,
    )
