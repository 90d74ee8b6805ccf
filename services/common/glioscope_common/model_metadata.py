"""The model contract: `model_repository/<name>/<n>/metadata.json`, read by the worker and the CLI.

Each Triton version folder `<n>/` of a model holds its ONNX file and its own metadata.json (the
metadata `version`, e.g. "0.4.0", is what users choose; `<n>` is Triton's version number). A folder
with one `metadata.json` at its root (the older layout, or a hospital's own model) is one version.
`onnx_file` is relative to the model folder in both layouts ("2/model.onnx").

A hospital drops in another model (an nnU-Net or MONAI network exported to ONNX) by adding a folder
with these files; nothing in the code names a particular model. docs/model-versions.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from glioscope_common.errors import InvalidInput

SEQUENCES = ("T1", "T1c", "T2", "FLAIR")


class CodedConcept(BaseModel):
    value: str
    scheme_designator: str = "SCT"
    meaning: str


class LabelInfo(BaseModel):
    """One output label (BraTS convention: 1 necrotic core, 2 oedema, 3 enhancing tumour)."""

    value: int = Field(ge=1, le=255)
    name: str
    category: CodedConcept
    type: CodedConcept
    color_rgb: tuple[int, int, int]


class Normalisation(BaseModel):
    method: Literal["zscore"] = "zscore"
    # "nonzero": statistics over voxels where any channel is non-zero (skull-stripped data);
    # "foreground": over an Otsu-like foreground mask (raw data).
    mask: Literal["nonzero", "foreground"] = "foreground"
    clip: float = 5.0


class ModelMetadata(BaseModel):
    name: str
    version: str
    onnx_file: str = "1/model.onnx"
    input_name: str = "image"
    output_name: str = "logits"
    channels: list[str]
    spacing_mm: tuple[float, float, float]
    orientation: Literal["RAS"] = "RAS"
    normalisation: Normalisation
    patch_size: tuple[int, int, int]
    overlap: float = Field(0.5, ge=0.0, lt=1.0)
    # What the model outputs over axis 1: logits for a softmax or for sigmoids, or "probabilities"
    # (the activation is inside the graph; the worker applies none).
    output_type: Literal["softmax", "sigmoid", "probabilities"] = "softmax"
    # Test-time augmentation: also predict on the image mirrored along these axes of the model's
    # RAS grid (0: left-right) and average the probabilities; each axis costs one more pass.
    flip_axes: list[Literal[0, 1, 2]] = []
    # Axes the graph itself mirrors each patch along (glioscope_training.mirror_graph): for the
    # model card; the worker does nothing for them.
    graph_flip_axes: list[Literal[0, 1, 2]] = []
    # Trained with sequence dropout (an absent sequence is an all-zero channel), so a study with only
    # some of the channels may be segmented (glioscope_common.sequence_regions decides which regions are
    # reported). A model without it is given complete studies only.
    accepts_missing_sequences: bool = False
    # The quality estimate (glioscope_inference.quality) under which a case is flagged for careful review,
    # chosen for this version on real labelled cases; None: the platform's default.
    quality_review_below: float | None = Field(None, gt=0.0, lt=1.0)

    @field_validator("flip_axes", "graph_flip_axes")
    @classmethod
    def _distinct_axes(cls, axes: list[int]) -> list[int]:
        if len(set(axes)) != len(axes):
            raise ValueError(f"flip axes must be distinct, got {axes}")
        return axes
    labels: list[LabelInfo]
    intended_use: str
    training_data: str
    # Measured accuracy: summary figures and, where measured, per-case tables (nested lists/objects).
    accuracy: dict[str, Any] = {}
    algorithm_name: str = "Glioscope U-Net"
    algorithm_version: str = "0.1.0"

    @field_validator("channels")
    @classmethod
    def _known_channels(cls, channels: list[str]) -> list[str]:
        unknown = [c for c in channels if c not in SEQUENCES]
        if unknown or len(set(channels)) != len(channels):
            raise ValueError(f"channels must be distinct names from {SEQUENCES}, got {channels}")
        return channels

    @model_validator(mode="after")
    def _mirroring_once(self) -> "ModelMetadata":
        if self.graph_flip_axes and self.output_type != "probabilities":
            raise ValueError("graph_flip_axes needs output_type 'probabilities' (the graph averages probabilities)")
        if set(self.flip_axes) & set(self.graph_flip_axes):
            raise ValueError("an axis in both flip_axes and graph_flip_axes would be mirrored twice")
        return self

    @classmethod
    def load(cls, model_dir: Path, version: str = "") -> "ModelMetadata":
        """The metadata of `version` ("0.3.1") of the model in `model_dir`; "" the newest."""
        return resolve_model_version(model_dir, version).metadata

    def accuracy_summary(self) -> dict[str, Any]:
        """The accuracy's single figures and notes (per-case tables left out)."""
        return {k: v for k, v in self.accuracy.items() if not isinstance(v, (dict, list))}


class UnknownModelVersion(InvalidInput):
    """A model version that is not in the model repository."""


@dataclass(frozen=True)
class ModelVersion:
    """One version of a model: its Triton version folder ("" for a folder with a root metadata.json)."""

    model_dir: Path
    folder: str
    metadata: ModelMetadata

    @property
    def onnx_path(self) -> Path:
        return self.model_dir / self.metadata.onnx_file


def model_versions(model_dir: Path) -> list[ModelVersion]:
    """Every version of the model in `model_dir`, oldest first (by Triton version number)."""
    model_dir = Path(model_dir)
    folders = sorted(
        (p for p in model_dir.iterdir() if p.name.isdigit() and (p / "metadata.json").is_file()), key=lambda p: int(p.name)
    ) if model_dir.is_dir() else []
    if not folders:
        root = model_dir / "metadata.json"
        if not root.is_file():
            return []
        return [ModelVersion(model_dir, "", ModelMetadata.model_validate(json.loads(root.read_text())))]
    versions = []
    for folder in folders:
        metadata = ModelMetadata.model_validate(json.loads((folder / "metadata.json").read_text()))
        if Path(metadata.onnx_file).parts[:1] != (folder.name,):
            raise ValueError(f"{folder / 'metadata.json'}: onnx_file {metadata.onnx_file!r} must be in {folder.name}/")
        versions.append(ModelVersion(model_dir, folder.name, metadata))
    seen = [v.metadata.version for v in versions]
    if len(set(seen)) != len(seen):
        raise ValueError(f"{model_dir}: two version folders carry the same metadata version ({seen})")
    return versions


def resolve_model_version(model_dir: Path, version: str = "") -> ModelVersion:
    """`version` ("0.3.1") of the model in `model_dir`, or the newest for "". An unknown version:
    UnknownModelVersion naming the available ones."""
    versions = model_versions(model_dir)
    if not versions:
        raise UnknownModelVersion(f"no model at {model_dir} (metadata.json missing)")
    if not version:
        return versions[-1]
    for candidate in versions:
        if candidate.metadata.version == version:
            return candidate
    available = ", ".join(v.metadata.version for v in versions)
    raise UnknownModelVersion(f"unknown model version {version!r} of {Path(model_dir).name}; available: {available}")
