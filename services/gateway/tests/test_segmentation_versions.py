"""Decoding and validating an edited mask (POST /api/studies/{uid}/segmentation/versions) without a
platform: the wire format, its limits, and the geometry check against a series' DICOM metadata."""

from __future__ import annotations

import base64
import gzip
import json
import math
import random
import tracemalloc

import numpy as np
import pytest

from glioscope_common.dicom import LPS_TO_RAS
from glioscope_common.dicom.read import read_series
from glioscope_common.dicom.write import write_series
from glioscope_common.errors import PayloadTooLarge, UnprocessableInput
from glioscope_common.labelmap import decode_labels, encode_labels
from glioscope_common.dev.testing import cornerstone_geometry
from glioscope_common.volume import Volume
from glioscope_gateway.segmentations.schemas import Geometry
from glioscope_gateway.segmentations.service import (
    MAX_LABEL,
    check_geometry,
    decode_base64,
    geometry_affine,
    latest_version_number,
    source_grid,
)

SHAPE = (12, 10, 7)


def oblique_series(shape: tuple[int, int, int] = SHAPE):  # type: ignore[no-untyped-def]
    """An oblique, anisotropic series whose voxel values are their own flat index (i + j*nx + k*nx*ny)."""
    c, s = math.cos(math.radians(12)), math.sin(math.radians(12))
    affine = np.eye(4)
    affine[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ np.diag([0.9, 1.1, 2.5])
    affine[:3, 3] = [-40.0, 25.0, 13.0]
    i, j, k = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    data = (i + j * shape[0] + k * shape[0] * shape[1]).astype(np.float32)
    datasets = write_series(
        Volume(data, affine), study_instance_uid="1.2.3", series_instance_uid="1.2.3.4", series_number=1,
        series_description="T1c", patient_id="P", patient_name="P^Q", study_date="20260101", study_time="120000",
        frame_of_reference_uid="1.2.3.5",
    )
    random.Random(3).shuffle(datasets)  # a PACS answers in any order
    return datasets


def test_labels_round_trip_in_cornerstone_layout() -> None:
    """Byte i + j*nx + k*nx*ny is voxel [i, j, k] of read_series: the viewer's buffer, built from the
    instances' pixel rows in slice order, decodes to the series' own voxels."""
    datasets = oblique_series()
    volume = read_series(datasets)
    geometry = cornerstone_geometry(datasets)
    normal = np.array(geometry["direction"][6:])
    ordered = sorted(datasets, key=lambda ds: float(np.array(ds.ImagePositionPatient, dtype=float) @ normal))
    buffer = b"".join(np.asarray(ds.pixel_array, dtype=np.uint8).tobytes() for ds in ordered)  # rows j, columns i
    decoded = decode_labels(gzip.compress(buffer), geometry["dimensions"], 255)
    np.testing.assert_array_equal(decoded, (volume.data % 256).astype(np.uint8))
    labels = np.random.default_rng(0).integers(0, 4, SHAPE).astype(np.uint8)
    np.testing.assert_array_equal(decode_labels(encode_labels(labels), SHAPE, MAX_LABEL), labels)


def test_cornerstone_geometry_matches_the_series_grid() -> None:
    datasets = oblique_series()
    geometry = Geometry(**cornerstone_geometry(datasets))
    metadata = [ds.to_json_dict() for ds in datasets]
    dimensions, lps = source_grid(metadata)
    assert dimensions == SHAPE
    check_geometry(geometry, dimensions, lps)
    # every voxel at the same patient position: the contract's formula vs read_series' affine
    ijk = np.argwhere(np.ones(SHAPE, dtype=bool))
    posted = np.c_[ijk, np.ones(len(ijk))] @ geometry_affine(geometry).T
    expected = np.c_[ijk, np.ones(len(ijk))] @ (LPS_TO_RAS @ read_series(datasets).affine).T
    np.testing.assert_allclose(posted, expected, atol=1e-4)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda g: g.update(origin=[g["origin"][0] + 0.5, *g["origin"][1:]]), "off the source series"),
        (lambda g: g.update(spacing=[g["spacing"][0], g["spacing"][1], g["spacing"][2] * 1.05]), "off the source series"),
        (lambda g: g.update(direction=[*g["direction"][3:6], *g["direction"][0:3], *g["direction"][6:]]), "off the source series"),
        (lambda g: g.update(direction=[*g["direction"][:6], *(-v for v in g["direction"][6:])]), "off the source series"),
        (lambda g: g.update(dimensions=[SHAPE[1], SHAPE[0], SHAPE[2]]), "dimensions"),
    ],
    ids=["origin", "slice-spacing", "swapped-axes", "reversed-slices", "dimensions"],
)
def test_a_different_grid_is_refused(change, message: str) -> None:  # type: ignore[no-untyped-def]
    datasets = oblique_series()
    values = cornerstone_geometry(datasets)
    change(values)
    dimensions, lps = source_grid([ds.to_json_dict() for ds in datasets])
    with pytest.raises(UnprocessableInput, match=message):
        check_geometry(Geometry(**values), dimensions, lps)


def test_a_tiny_numerical_difference_is_accepted() -> None:
    datasets = oblique_series()
    values = cornerstone_geometry(datasets)
    values["origin"] = [v + 1e-3 for v in values["origin"]]
    values["spacing"] = [v * (1 + 1e-6) for v in values["spacing"]]
    dimensions, lps = source_grid([ds.to_json_dict() for ds in datasets])
    check_geometry(Geometry(**values), dimensions, lps)


def test_a_series_that_is_not_a_volume_is_refused() -> None:
    datasets = oblique_series()[:1]
    with pytest.raises(UnprocessableInput, match="not an image volume"):
        source_grid([ds.to_json_dict() for ds in datasets])


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"not gzip at all", "not valid gzip"),
        (gzip.compress(bytes(int(np.prod(SHAPE))))[:-12], "truncated"),
        (gzip.compress(bytes(int(np.prod(SHAPE)) - 1)), "need 840"),
        (gzip.compress(bytes(int(np.prod(SHAPE)) + 1)), "more than the 840 bytes"),
        (gzip.compress(bytes(int(np.prod(SHAPE)) - 1) + b"\x07"), r"labels must be 0..5; found \[7\]"),
        (gzip.compress(bytes(int(np.prod(SHAPE)))) + b"trailing", "after the gzip stream"),
    ],
    ids=["not-gzip", "truncated", "too-few-bytes", "too-many-bytes", "label-7", "trailing-data"],
)
def test_bad_labels_are_refused(payload: bytes, message: str) -> None:
    with pytest.raises(UnprocessableInput, match=message):
        decode_labels(payload, SHAPE, MAX_LABEL)


def test_a_gzip_bomb_costs_no_memory() -> None:
    bomb = gzip.compress(bytes(1024**3), compresslevel=9)  # 1 GiB of zeros in ~1 MiB
    tracemalloc.start()
    try:
        with pytest.raises(UnprocessableInput, match="more than"):
            decode_labels(bomb, SHAPE, MAX_LABEL)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024**2, peak


def test_size_limits() -> None:
    with pytest.raises(PayloadTooLarge, match="exceeds"):
        decode_labels(gzip.compress(b""), (1024, 1024, 513), MAX_LABEL)
    with pytest.raises(UnprocessableInput, match="positive"):
        decode_labels(gzip.compress(b""), (0, 10, 10), MAX_LABEL)


@pytest.mark.parametrize("text", ["not base64!", "QUJ", "QUJDRA==\n\x00"])
def test_bad_base64_is_refused(text: str) -> None:
    with pytest.raises(UnprocessableInput, match="base64"):
        decode_base64(text)


def test_base64_round_trip() -> None:
    payload = encode_labels(np.zeros(SHAPE, dtype=np.uint8))
    assert decode_base64(base64.b64encode(payload).decode()) == payload


def test_the_latest_version_is_the_highest_number() -> None:
    from types import SimpleNamespace

    from glioscope_common.records.models import JobState

    def edit(number: int, state: JobState):  # type: ignore[no-untyped-def]
        return SimpleNamespace(version=number), SimpleNamespace(state=state)

    assert latest_version_number([]) == 1
    assert latest_version_number([edit(2, JobState.succeeded), edit(3, JobState.failed)]) == 3
    assert latest_version_number([edit(2, JobState.failed)]) == 2
    assert latest_version_number([edit(2, JobState.succeeded), edit(3, JobState.queued)]) == 3


# -- the routes in process (real Orthanc, SQLite) ----------------------------------------------------


def test_an_oversized_body_is_cut_off(gateway) -> None:  # type: ignore[no-untyped-def]
    from glioscope_gateway.segmentations.routes import MAX_BODY_BYTES

    url = "/api/studies/1.2.3/segmentation/versions"
    declared = gateway.post(url, content=b"{}", headers={"content-length": str(MAX_BODY_BYTES + 1),
                                                         "content-type": "application/json"})
    assert declared.status_code == 413, declared.text
    chunk = b" " * (1024 * 1024)

    def stream():  # type: ignore[no-untyped-def]
        for _ in range(MAX_BODY_BYTES // len(chunk) + 2):
            yield chunk

    streamed = gateway.post(url, content=stream(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413, streamed.text
    assert "exceeds" in streamed.json()["detail"]


def test_unknown_study_roles_and_schema(gateway) -> None:  # type: ignore[no-untyped-def]
    from .conftest import ADMIN_PASSWORD, ADMIN_USERNAME, sign_in

    admin = {"authorization": f"Bearer {sign_in(gateway, ADMIN_USERNAME, ADMIN_PASSWORD)['access_token']}", "x-api-key": ""}
    url = "/api/studies/1.2.3/segmentation/versions"
    body = {"base_version": 1, "source_series_instance_uid": "1.2", "labels": "AAAA",
            "geometry": {"dimensions": [1, 1, 1], "spacing": [1, 1, 1], "origin": [0, 0, 0], "direction": [1, 0, 0, 0, 1, 0, 0, 0, 1]}}
    assert gateway.post(url, json=body).status_code == 403  # the service key may not edit
    assert gateway.post(url, json=body, headers=admin).status_code == 404
    assert gateway.get(url).status_code == 404
    for change in ({"spacing": [0, 1, 1]}, {"direction": [1, 0, 0]}, {"origin": [0, 0, float("nan")]}):
        bad = gateway.post(url, content=json.dumps({**body, "geometry": {**body["geometry"], **change}}),
                           headers={**admin, "content-type": "application/json"})
        assert bad.status_code == 422, (change, bad.text)
