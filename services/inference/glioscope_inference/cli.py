"""`glioscope segment`: the pipeline on NIfTI files or a DICOM folder, without any server.

    glioscope segment --t1 T1.nii.gz --t1c T1C.nii.gz --t2 T2.nii.gz --flair FLAIR.nii.gz --output DIR
    glioscope segment --dicom DIR --output DIR

Any subset of the four sequences with a T1c or a FLAIR is segmented, with the regions it supports
(glioscope_common.sequence_regions; stderr says which sequences were used and which regions are not reported).

Writes DIR/segmentation.nii.gz (uint8 labels on the T1c grid, T1c affine; FLAIR without a T1c), DIR/measurements.json,
DIR/key_{axial,coronal,sagittal}.png, DIR/timings.json and DIR/model.json (the model version that ran:
`--model-version 0.3.1`, default GLIOSCOPE_MODEL_VERSION, else the newest). Exit codes: 0 done, 2 bad input
(one line on stderr), 3 inference backend unavailable.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from glioscope_common.errors import GlioscopeError, UnprocessableInput, UpstreamUnavailable
from glioscope_common.sequence_regions import refusal_reason
from glioscope_common.volume import Volume

EXIT_BAD_INPUT = 2
EXIT_UNAVAILABLE = 3


def _settings():  # type: ignore[no-untyped-def]
    from glioscope_common.settings import CommonSettings

    class CommandSettings(CommonSettings):
        needs_internal_key = False  # the command calls no other service
        model_version: str = ""  # as the worker's GLIOSCOPE_MODEL_VERSION; empty: the newest

    return CommandSettings()


def _checked_settings():  # type: ignore[no-untyped-def]
    """The settings, or a bad-input error naming what is wrong: no silent default when GLIOSCOPE_* is invalid
    (a wrong GLIOSCOPE_INFERENCE_URL or GLIOSCOPE_MODEL_REPOSITORY must not quietly become onnxruntime or a
    relative path)."""
    from pydantic import ValidationError

    try:
        return _settings()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors())
        raise UnprocessableInput(
            f"invalid GLIOSCOPE_* settings ({problems}); fix the environment or give --model-dir and --inference-url"
        ) from None


def _default_model_dir() -> Path:
    settings = _checked_settings()
    return Path(settings.model_repository) / settings.model_name


def _default_inference_url() -> str:
    return str(_checked_settings().inference_url)


def load_nifti(path: str | Path) -> Volume:
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise UnprocessableInput(f"file not found: {path}")
    try:
        image = nib.load(str(path))
        data = np.asanyarray(image.dataobj, dtype=np.float32)
    except Exception as exc:
        raise UnprocessableInput(f"cannot read {path} as NIfTI: {exc}") from None
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise UnprocessableInput(f"{path}: expected a 3-D volume, got shape {data.shape}")
    return Volume(np.ascontiguousarray(data), np.asarray(image.affine, dtype=float))


def load_dicom_study(folder: str | Path, overrides: dict[str, str] | None = None) -> tuple[dict[str, Volume], dict[str, str]]:
    """Read every DICOM file under `folder`, identify T1/T1c/T2/FLAIR, build one Volume per role.

    Returns (volumes by role, FrameOfReferenceUID by role)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    from glioscope_common.sequences import SeriesInfo, identify_sequences

    folder = Path(folder)
    if not folder.is_dir():
        raise UnprocessableInput(f"not a directory: {folder}")
    by_series: dict[str, list] = defaultdict(list)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(str(path))
        except (InvalidDicomError, OSError, ValueError, EOFError):
            continue
        uid = str(getattr(ds, "SeriesInstanceUID", "") or "")
        if uid and "PixelData" in ds:
            by_series[uid].append(ds)
    if not by_series:
        raise UnprocessableInput(f"no DICOM images found under {folder}")
    infos = [SeriesInfo.from_dataset(datasets[0], number_of_instances=_instances(datasets)) for datasets in by_series.values()]
    mapping = identify_sequences(infos, overrides)
    refusal = refusal_reason(mapping)
    if refusal:
        raise UnprocessableInput(f"{refusal} (found {len(by_series)} series)")
    from glioscope_common.dicom.read import read_series  # written alongside; imported lazily

    volumes: dict[str, Volume] = {}
    frames: dict[str, str] = {}
    for role, uid in mapping.items():
        if uid not in by_series:
            raise UnprocessableInput(f"{role}: series {uid} is not in {folder}")
        volumes[role] = read_series(by_series[uid])
        frames[role] = str(getattr(by_series[uid][0], "FrameOfReferenceUID", "") or "")
    return volumes, frames


def _instances(datasets: list) -> int:
    frames = sum(int(getattr(ds, "NumberOfFrames", 1) or 1) for ds in datasets)
    return max(len(datasets), frames)


def _parse_assignments(values: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values or []:
        role, sep, uid = value.partition("=")
        if not sep or not uid:
            raise UnprocessableInput(f"--series expects ROLE=SeriesInstanceUID, got {value!r}")
        out[role.strip()] = uid.strip()
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glioscope", description="Glioscope brain-tumour segmentation (research use only)")
    sub = parser.add_subparsers(dest="command", required=True)
    seg = sub.add_parser("segment", help="segment one study (NIfTI files or a DICOM folder)")
    seg.add_argument("--t1", help="T1 NIfTI")
    seg.add_argument("--t1c", help="post-contrast T1 NIfTI (the reference grid of the output)")
    seg.add_argument("--t2", help="T2 NIfTI")
    seg.add_argument("--flair", help="FLAIR NIfTI")
    seg.add_argument("--dicom", help="folder with the study's DICOM files (searched recursively)")
    seg.add_argument("--series", action="append", metavar="ROLE=UID", help="force a series for a role (DICOM input)")
    seg.add_argument("--output", required=True, help="output folder (created)")
    seg.add_argument("--model-dir", default=None, help="model folder with metadata.json (default: settings)")
    seg.add_argument("--model-version", default=None,
                     help='the model version to run, e.g. "0.3.1" (default: GLIOSCOPE_MODEL_VERSION, else the newest)')
    seg.add_argument("--inference-url", default=None, help='"onnxruntime" or "grpc://host:8001" (default: settings)')
    seg.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")
    group = seg.add_mutually_exclusive_group()
    group.add_argument("--coregister", dest="coregister", action="store_true", default=None, help="always co-register")
    group.add_argument("--no-coregister", dest="coregister", action="store_false", help="inputs are already co-registered")
    seg.add_argument("--quiet", action="store_true")
    return parser


def segment(args: argparse.Namespace) -> int:
    from glioscope_common.inference_backend import make_backend
    from glioscope_common.model_metadata import resolve_model_version

    from glioscope_inference.pipeline import segment_study

    frames: dict[str, str] | None = None
    if args.dicom:
        if any([args.t1, args.t1c, args.t2, args.flair]):
            raise UnprocessableInput("give either --dicom or the four NIfTI files, not both")
        volumes, frames = load_dicom_study(args.dicom, _parse_assignments(args.series))
    else:
        given = {"T1": args.t1, "T1c": args.t1c, "T2": args.t2, "FLAIR": args.flair}
        refusal = refusal_reason(role for role, path in given.items() if path)
        if refusal:
            raise UnprocessableInput(f"{refusal} (give --t1c and/or --flair, or use --dicom)")
        volumes = {role: load_nifti(path) for role, path in given.items() if path}

    model_dir = Path(args.model_dir) if args.model_dir else _default_model_dir()
    version = args.model_version if args.model_version is not None else _checked_settings().model_version
    model = resolve_model_version(model_dir, version)
    metadata = model.metadata
    backend = make_backend(args.inference_url or _default_inference_url(), model_dir, metadata, threads=args.threads,
                           triton_version=model.folder)
    if not args.quiet:
        print(f"model {metadata.name} {metadata.version}", file=sys.stderr)

    def progress(stage: str, fraction: float) -> None:
        if not args.quiet and fraction >= 1.0:
            print(f"  {stage} done", file=sys.stderr)

    from glioscope_inference.brain_extraction import BRAIN_MODEL, load_brain_extractor

    # the brain-extraction folder beside the tumour model's (used only for images not skull-stripped)
    brain_extractor = load_brain_extractor(model_dir.parent / BRAIN_MODEL, args.threads or 0)
    result = segment_study(volumes, metadata, backend, coregister=args.coregister, progress=progress,
                           frame_of_reference_uids=frames, brain_extractor=brain_extractor)

    import nibabel as nib

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    image = nib.Nifti1Image(result.label_map.astype(np.uint8), result.reference.affine)
    image.set_qform(result.reference.affine, code=1)
    image.set_sform(result.reference.affine, code=1)
    image.header.set_data_dtype(np.uint8)
    nib.save(image, str(out / "segmentation.nii.gz"))
    if result.brain_mask is not None:
        brain = nib.Nifti1Image(result.brain_mask.astype(np.uint8), result.reference.affine)
        brain.set_qform(result.reference.affine, code=1)
        brain.set_sform(result.reference.affine, code=1)
        nib.save(brain, str(out / "brain_mask.nii.gz"))
    (out / "measurements.json").write_text(result.measurements.model_dump_json(indent=2))
    for view, png in result.key_images.items():
        (out / f"key_{view}.png").write_bytes(png)
    (out / "timings.json").write_text(json.dumps(result.timings_s, indent=2))
    (out / "model.json").write_text(json.dumps({"name": metadata.name, "version": metadata.version}, indent=2))
    m = result.measurements
    for warning in m.input_warnings:
        print(f"glioscope: warning: {warning}", file=sys.stderr)
    if not args.quiet:
        volumes_text = ", ".join(f"{region} {m.region_volumes_ml[region]:.1f} mL" for region in m.regions_reported)
        print(f"{volumes_text}, max axial diameter {m.max_axial_diameter_mm:.1f} mm, {m.hemisphere} -> {out}")
    if not (args.quiet and result.plan.complete):
        print(f"glioscope: {result.plan.summary()}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "segment":
            return segment(args)
    except UpstreamUnavailable as exc:
        print(f"glioscope: error: {exc.detail}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except GlioscopeError as exc:
        print(f"glioscope: error: {exc.detail}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (FileNotFoundError, ValueError) as exc:
        print(f"glioscope: error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return EXIT_BAD_INPUT
    parser.error(f"unknown command {args.command}")
    return EXIT_BAD_INPUT


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
