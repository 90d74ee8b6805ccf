"""The model contract: `model_repository/<name>/metadata.json`, read by the worker and the CLI.

A hospital drops in another model (an nnU-Net or MONAI network exported to ONNX) by adding a folder
with this file; nothing in the code names a particular model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

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

    @field_validator("flip_axes", "graph_flip_axes")
    @classmethod
    def _distinct_axes(cls, axes: list[int]) -> list[int]:
        if len(set(axes)) != len(axes):
            raise ValueError(f"flip axes must be distinct, got {axes}")
        return axes
    labels: list[LabelInfo]
    intended_use: str
    training_data: str
    accuracy: dict[str, object] = {}
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
    def load(cls, model_dir: Path) -> "ModelMetadata":
        return cls.model_validate(json.loads((model_dir / "metadata.json").read_text()))
