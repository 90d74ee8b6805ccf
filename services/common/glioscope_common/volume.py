"""A 3-D image with its patient geometry.

Convention used across Glioscope: `data` is indexed [i, j, k] and `affine` maps (i, j, k, 1) to
RAS+ world millimetres, exactly as nibabel does. DICOM (LPS+) is converted at the boundary
(the glioscope_common.dicom package).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Volume:
    data: np.ndarray
    affine: np.ndarray

    def __post_init__(self) -> None:
        if self.data.ndim != 3:
            raise ValueError(f"a volume must be 3-D, got shape {self.data.shape}")
        if self.affine.shape != (4, 4):
            raise ValueError("affine must be 4x4")
        if not np.all(np.isfinite(self.affine)) or abs(np.linalg.det(self.affine[:3, :3])) < 1e-9:
            raise ValueError("affine must be finite and invertible")

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.data.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    def world_coordinates(self, ijk: np.ndarray) -> np.ndarray:
        """Map an (N, 3) array of voxel indices to (N, 3) RAS millimetres."""
        ijk = np.asarray(ijk, dtype=float)
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]
