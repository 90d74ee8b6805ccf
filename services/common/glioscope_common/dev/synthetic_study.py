"""Dev and test tooling: a study of up to four MR sequences written as DICOM (`write_study`), with
realistic acquisition parameters; the demo (`make run`), the tests and the benchmarks use it."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from glioscope_common.dicom.write import write_series
from glioscope_common.volume import Volume

__all__ = ["SEQUENCE_TAGS", "write_study"]


# Realistic acquisition parameters per sequence (3 T brain protocol).
SEQUENCE_TAGS: dict[str, dict[str, object]] = {
    "T1": {
        "SeriesDescription": "T1 MPRAGE",
        "ProtocolName": "T1 MPRAGE",
        "SequenceName": "*tfl3d1",
        "ScanningSequence": ["GR", "IR"],
        "SequenceVariant": ["SP", "MP"],
        "ScanOptions": "",
        "MRAcquisitionType": "3D",
        "RepetitionTime": "2300",
        "EchoTime": "2.98",
        "InversionTime": "900",
        "FlipAngle": "9",
        "EchoTrainLength": "1",
    },
    "T1c": {
        "SeriesDescription": "T1 MPRAGE POST GD",
        "ProtocolName": "T1 MPRAGE POST GD",
        "SequenceName": "*tfl3d1",
        "ScanningSequence": ["GR", "IR"],
        "SequenceVariant": ["SP", "MP"],
        "ScanOptions": "",
        "MRAcquisitionType": "3D",
        "RepetitionTime": "2300",
        "EchoTime": "2.98",
        "InversionTime": "900",
        "FlipAngle": "9",
        "EchoTrainLength": "1",
        "ContrastBolusAgent": "Gadobutrol",
        "ContrastBolusRoute": "IV",
        "ContrastBolusVolume": "7.5",
    },
    "T2": {
        "SeriesDescription": "T2 TSE AX",
        "ProtocolName": "T2 TSE AX",
        "SequenceName": "*tse2d1_16",
        "ScanningSequence": "SE",
        "SequenceVariant": ["SK", "SP"],
        "ScanOptions": "",
        "MRAcquisitionType": "2D",
        "RepetitionTime": "5000",
        "EchoTime": "96",
        "FlipAngle": "150",
        "EchoTrainLength": "16",
    },
    "FLAIR": {
        "SeriesDescription": "T2 FLAIR AX",
        "ProtocolName": "T2 FLAIR AX",
        "SequenceName": "*tir2d1_16",
        "ScanningSequence": ["SE", "IR"],
        "SequenceVariant": ["SK", "SP", "MP"],
        "ScanOptions": "",
        "MRAcquisitionType": "2D",
        "RepetitionTime": "9000",
        "EchoTime": "81",
        "InversionTime": "2500",
        "FlipAngle": "150",
        "EchoTrainLength": "16",
    },
}
_COMMON_MR_TAGS: dict[str, object] = {
    "Manufacturer": "Glioscope Synthetic",
    "ManufacturerModelName": "Phantom 3T",
    "MagneticFieldStrength": "3",
    "ImagedNucleus": "1H",
    "ImagingFrequency": "123.2",
    "NumberOfAverages": "1",
    "InstitutionName": "Glioscope",
}


def write_study(
    images: dict[str, Volume],
    out_dir: Path | None,
    *,
    patient_id: str,
    patient_name: str,
    study_description: str,
    seed: int = 0,
) -> tuple[str, dict[str, list[Dataset]]]:
    """Write the four sequences ("T1", "T1c", "T2", "FLAIR"; any subset) as one study.

    UIDs, dates and times are deterministic in (seed, patient_id). With `out_dir`, files go to
    out_dir/<series_number>/<instance_number>.dcm. Returns (study_instance_uid, datasets per sequence).
    """
    unknown = sorted(set(images) - set(SEQUENCE_TAGS))
    if unknown:
        raise ValueError(f"unknown sequences {unknown}; expected a subset of {list(SEQUENCE_TAGS)}")
    entropy = [str(seed), patient_id]
    study_uid = generate_uid(entropy_srcs=[*entropy, "study"])
    frame_uid = generate_uid(entropy_srcs=[*entropy, "frame-of-reference"])
    day = _dt.date(2024, 1, 1) + _dt.timedelta(days=seed % 365)
    study_date = day.strftime("%Y%m%d")
    accession = generate_uid(entropy_srcs=[*entropy, "accession"]).split(".")[-1][:12]
    result: dict[str, list[Dataset]] = {}
    for index, name in enumerate(["T1", "T1c", "T2", "FLAIR"]):
        if name not in images:
            continue
        tags = {**_COMMON_MR_TAGS, **SEQUENCE_TAGS[name]}
        description = str(tags.pop("SeriesDescription"))
        series_number = index + 1
        series_time = f"{9 + index // 4:02d}{10 + 6 * index:02d}00"
        tags.update(SeriesTime=series_time, ContentTime=series_time, AcquisitionTime=series_time)
        datasets = write_series(
            images[name],
            study_instance_uid=study_uid,
            series_instance_uid=generate_uid(entropy_srcs=[*entropy, "series", name]),
            series_number=series_number,
            series_description=description,
            patient_id=patient_id,
            patient_name=patient_name,
            study_date=study_date,
            study_time="090000",
            accession_number=accession,
            study_description=study_description,
            frame_of_reference_uid=frame_uid,
            extra=tags,
        )
        result[name] = datasets
        if out_dir is not None:
            folder = Path(out_dir) / str(series_number)
            folder.mkdir(parents=True, exist_ok=True)
            for ds in datasets:
                ds.save_as(folder / f"{int(ds.InstanceNumber)}.dcm", enforce_file_format=True)
    return study_uid, result
