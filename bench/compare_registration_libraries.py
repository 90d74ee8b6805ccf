#!/usr/bin/env python3
"""Rigid FLAIR -> T1c co-registration on a real BraTS case moved by known motions, with ANTsPy or
ITK-elastix: the comparison behind the choice of SimpleITK (docs/registration.md). SimpleITK's own
figures come from the product's function (`python bench/compare_registration_libraries.py simpleitk`).

ANTsPy and ITK-elastix are not project dependencies: run the other two from a separate environment,
e.g. `python -m venv /tmp/reg && /tmp/reg/bin/pip install "numpy<2" antspyx itk-elastix nibabel`, then
`/tmp/reg/bin/python bench/compare_registration_libraries.py ants` (or `elastix`).
"""
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np

case = "Brats18_CBICA_ALU_1"
base = Path(__file__).resolve().parents[2] / "shared" / "data" / "brats18-labelled" / case / case
base = str(base)
t1c, fl = nib.load(base + "_t1ce.nii.gz"), nib.load(base + "_flair.nii.gz")
fixed_data, fixed_aff = np.asarray(t1c.dataobj, np.float32), t1c.affine
c = fixed_aff[:3, :3] @ ((np.array(fixed_data.shape) - 1) / 2) + fixed_aff[:3, 3]

def rot(dx, dz, shift):
    ax, az = np.deg2rad(dx), np.deg2rad(dz)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    m = np.eye(4); m[:3, :3] = rz @ rx; m[:3, 3] = c - m[:3, :3] @ c + np.asarray(shift); return m

motions = [rot(6, -8, [5, -4, 3]), rot(-10, 4, [-8, 6, -2]), rot(12, 9, [12, -10, 6]), rot(0, 0, [0, 0, 0])]
pts = np.argwhere(fixed_data > 0)[::2000] @ fixed_aff[:3, :3].T + fixed_aff[:3, 3]
LPS = np.diag([-1.0, -1.0, 1.0, 1.0])

def err(T, motion):
    E = T @ np.linalg.inv(motion)
    e = np.linalg.norm(pts @ E[:3, :3].T + E[:3, 3] - pts, axis=1)
    return f"{e.mean():.2f} / {e.max():.2f} mm"

which = sys.argv[1]
for motion in motions:
    moving_aff = np.linalg.inv(motion) @ fl.affine
    if which == "simpleitk":
        from glioscope_common.volume import Volume
        from glioscope_inference.registration import coregister_rigid

        s = time.perf_counter()
        T = coregister_rigid(Volume(np.asarray(fl.dataobj, np.float32), moving_aff), Volume(fixed_data, fixed_aff))
        el = time.perf_counter() - s
    elif which == "ants":
        import ants
        def aimg(data, aff):
            sp = np.linalg.norm(aff[:3, :3], axis=0)
            return ants.from_numpy(np.ascontiguousarray(data), origin=(LPS[:3, :3] @ aff[:3, 3]).tolist(),
                                   spacing=sp.tolist(), direction=LPS[:3, :3] @ aff[:3, :3] / sp)
        f = aimg(fixed_data, fixed_aff); m = aimg(np.asarray(fl.dataobj, np.float32), moving_aff)
        s = time.perf_counter()
        out = ants.registration(fixed=f, moving=m, type_of_transform="Rigid", aff_metric="mattes", aff_sampling=32, random_seed=1)
        el = time.perf_counter() - s
        tx = ants.read_transform(out["fwdtransforms"][0])
        M = np.eye(4); p = np.asarray(tx.parameters); M[:3, :3] = p[:9].reshape(3, 3); centre = np.asarray(tx.fixed_parameters)
        M[:3, 3] = p[9:12] + centre - M[:3, :3] @ centre  # fixed(LPS) -> moving(LPS)
        T = np.linalg.inv(LPS @ M @ LPS)
    else:
        import itk
        def img(data, aff):
            sp = np.linalg.norm(aff[:3, :3], axis=0)
            im = itk.image_from_array(np.ascontiguousarray(data.transpose(2, 1, 0)))
            im.SetSpacing(sp.tolist()); im.SetOrigin((LPS[:3, :3] @ aff[:3, 3]).tolist())
            im.SetDirection(itk.matrix_from_array((LPS[:3, :3] @ aff[:3, :3] / sp)))
            return im
        f = img(fixed_data, fixed_aff); m = img(np.asarray(fl.dataobj, np.float32), moving_aff)
        params = itk.ParameterObject.New(); params.AddParameterMap(params.GetDefaultParameterMap("rigid"))
        s = time.perf_counter()
        _, tp = itk.elastix_registration_method(f, m, parameter_object=params, log_to_console=False)
        el = time.perf_counter() - s
        pm = tp.GetParameterMap(0)
        rx, ry, rz, tx_, ty, tz = (float(v) for v in pm["TransformParameters"])
        centre = np.array([float(v) for v in pm["CenterOfRotationPoint"]])
        cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
        R = np.array([[1,0,0],[0,cx,-sx],[0,sx,cx]]); Ry = np.array([[cy,0,sy],[0,1,0],[-sy,0,cy]]); Rz = np.array([[cz,-sz,0],[sz,cz,0],[0,0,1]])
        M = np.eye(4); M[:3, :3] = Rz @ Ry @ R; M[:3, 3] = np.array([tx_, ty, tz]) + centre - M[:3, :3] @ centre
        T = np.linalg.inv(LPS @ M @ LPS)
    print(which, f"{el:.1f} s", err(T, motion), flush=True)
