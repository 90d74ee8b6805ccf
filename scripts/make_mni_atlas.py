"""Build services/inference/glioscope_inference/atlas_data/mni152_2009a_t1_2mm.nii.gz, the template the
worker registers each study to for the tumour's location (hemisphere, lobes).

Source: the MNI ICBM 2009a nonlinear symmetric T1 template (brain only, 1 mm) that nilearn ships inside
its wheel (`nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz`), so nothing is
downloaded at run time. It is averaged to 2 mm (2x2x2 blocks) and stored as uint8; registration to a
brain at this resolution takes seconds on two cores and locates a lobe to a few millimetres.
Licence: atlas_data/LICENSE-MNI-ICBM152 (copyright notice to keep with every copy).

Usage: pip download --no-deps nilearn==0.14.1 -d /tmp/wh && python scripts/make_mni_atlas.py /tmp/wh/nilearn-0.14.1-py3-none-any.whl
"""

from __future__ import annotations

import gzip
import sys
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np

MEMBER = "nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
TARGET = Path(__file__).resolve().parents[1] / "services/inference/glioscope_inference/atlas_data/mni152_2009a_t1_2mm.nii.gz"


def main(wheel: str) -> None:
    with zipfile.ZipFile(wheel) as archive:
        image = nib.Nifti1Image.from_bytes(gzip.decompress(archive.read(MEMBER)))
    data = np.asarray(image.get_fdata(), dtype=np.float32)
    shape = [s - s % 2 for s in data.shape]
    data = data[: shape[0], : shape[1], : shape[2]]
    blocks = data.reshape(shape[0] // 2, 2, shape[1] // 2, 2, shape[2] // 2, 2).mean(axis=(1, 3, 5))
    affine = image.affine.copy()
    affine[:3, :3] = image.affine[:3, :3] * 2
    affine[:3, 3] = image.affine[:3, 3] + image.affine[:3, :3] @ np.array([0.5, 0.5, 0.5])  # block centres
    out = nib.Nifti1Image(np.clip(np.round(blocks), 0, 255).astype(np.uint8), affine)
    out.set_qform(affine, code=4)  # 4: MNI152
    out.set_sform(affine, code=4)
    TARGET.write_bytes(gzip.compress(out.to_bytes(), compresslevel=9, mtime=0))  # mtime 0: reproducible bytes
    print(TARGET, out.shape, f"{TARGET.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main(sys.argv[1])
