"""DICOM image series <-> `Volume`: the geometry convention shared by `read`, `write` (and the dev-only
synthetic study writer, `glioscope_common.dev.synthetic_study`).

Geometry convention (see glioscope_common.volume): for a DICOM series, i is the column index, j the
row index and k the slice index, slices sorted ascending along the slice normal
(ImageOrientationPatient row direction x column direction), so
``data[i, j, k] == pixel_array_of_slice_k[j, i]`` (after RescaleSlope/Intercept). DICOM patient
coordinates are LPS+; `Volume.affine` is RAS+, converted in this package and nowhere else.

Consequence for writing: a DICOM series can only express affines whose k axis points along
i x j (a positive determinant). `write.write_series` writes a volume with a negative-determinant
affine with its k axis reversed, so `read_series(write_series(v))` returns the same voxels at the
same patient positions with k flipped (see `write.canonical_slice_order`).

Error messages name the series UID and the geometric problem only, never patient data.
NIfTI files: `glioscope_common.dicom.nifti`.
"""

import numpy as np

__all__ = ["LPS_TO_RAS"]

# LPS <-> RAS: negate x and y. The matrix is its own inverse.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
