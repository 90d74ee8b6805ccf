from __future__ import annotations

from pydicom.dataset import Dataset

from glioscope_common.sequences import SeriesInfo, classify, identify_sequences, missing_sequences


def s(uid, desc="", *, te=None, tr=None, ti=None, n=150, agent="", image_type="ORIGINAL\\PRIMARY\\M\\ND",
      acq="2D", protocol="", scanning="SE") -> SeriesInfo:
    return SeriesInfo(
        series_instance_uid=uid, modality="MR", series_description=desc, protocol_name=protocol or desc,
        sequence_name="", scanning_sequence=scanning, sequence_variant="", contrast_bolus_agent=agent,
        echo_time=te, repetition_time=tr, inversion_time=ti, mr_acquisition_type=acq,
        number_of_instances=n, image_type=image_type,
    )


def test_siemens_study():
    series = [
        s("loc", "localizer", te=5, tr=8.6, n=3, image_type="ORIGINAL\\PRIMARY\\M\\NORM"),
        s("t1", "t1_mprage_sag_p2_iso", te=2.3, tr=2300, ti=900, acq="3D", n=176, scanning="GR\\IR"),
        s("t2", "t2_tse_tra_p2", te=98, tr=5000),
        s("flair", "t2_tirm_tra_dark-fluid", te=81, tr=9000, ti=2500, scanning="SE\\IR"),
        s("dwi", "ep2d_diff_3scan_trace", te=89, tr=4000),
        s("adc", "ep2d_diff_3scan_trace_ADC", te=89, tr=4000, image_type="DERIVED\\PRIMARY\\DIFFUSION\\ADC"),
        s("t1c", "t1_mprage_sag_p2_iso_KM", te=2.3, tr=2300, ti=900, acq="3D", n=176, agent="Gadovist"),
        s("mpr", "t1_mprage_sag_p2_iso_KM_MPR_tra", te=2.3, tr=2300, n=176, image_type="DERIVED\\SECONDARY\\MPR"),
    ]
    assert identify_sequences(series) == {"T1": "t1", "T1c": "t1c", "T2": "t2", "FLAIR": "flair"}


def test_ge_study_prefers_3d_and_more_slices():
    series = [
        s("3pl", "3-Plane Loc", te=1.5, tr=4.6, n=9),
        s("t1", "Ax T1 FSPGR 3D", te=3.2, tr=8.2, acq="3D", n=156),
        s("t2", "AX T2 FRFSE", te=102, tr=6000, n=30),
        s("flair2d", "Ax T2 FLAIR", te=140, tr=9000, ti=2250, n=30),
        s("flair3d", "Sag 3D FLAIR CUBE", te=120, tr=6000, ti=1800, acq="3D", n=200),
        s("t1c2d", "AX T1 FLAIR +C", te=9, tr=2000, ti=800, n=30),
        s("t1c3d", "Ax T1 BRAVO +C", te=3.2, tr=8.2, acq="3D", n=156),
        s("swan", "Ax SWAN", te=25, tr=40, n=100),
    ]
    assert identify_sequences(series) == {"T1": "t1", "T1c": "t1c3d", "T2": "t2", "FLAIR": "flair3d"}


def test_philips_study():
    series = [
        s("survey", "Survey_32ch_HeadCoil", te=4.6, tr=10, n=12),
        s("t1", "T1W_3D_TFE", te=3.7, tr=8.1, acq="3D", n=180),
        s("t2", "T2W_TSE", te=80, tr=3000, n=28),
        s("flair", "T2W_FLAIR", te=125, tr=11000, ti=2800, n=28),
        s("t1c", "sT1W_3D_TFE_Gd", te=3.7, tr=8.1, acq="3D", n=180),
    ]
    assert identify_sequences(series) == {"T1": "t1", "T1c": "t1c", "T2": "t2", "FLAIR": "flair"}


def test_physics_only_identification():
    series = [
        s("a", "series 3", te=12, tr=550),  # T1 spin echo
        s("b", "series 4", te=95, tr=4500),  # T2
        s("c", "series 5", te=110, tr=9000, ti=2500, scanning="SE\\IR"),  # FLAIR
        s("d", "series 7", te=12, tr=550, agent="Gadobutrol"),  # T1 + contrast agent
    ]
    assert identify_sequences(series) == {"T1": "a", "T1c": "d", "T2": "b", "FLAIR": "c"}


def test_pre_is_not_post_and_t1_flair_is_t1():
    assert classify(s("x", "T1 PRE", te=10, tr=500))[0] == "T1"
    assert classify(s("x", "AX T1 FLAIR", te=9, tr=2000, ti=800))[0] == "T1"
    assert classify(s("x", "T1 MPRAGE POST", te=3, tr=2000))[0] == "T1c"
    assert classify(s("x", "T1+C", te=10, tr=500))[0] == "T1c"


def test_localizer_maps_subtractions_and_few_instances_ignored():
    series = [
        s("loc", "AAHead_Scout", te=1.4, tr=3.2, n=128, image_type="ORIGINAL\\PRIMARY\\M\\NORM\\LOCALIZER"),
        s("sub", "T1 post", te=3, tr=8, n=180, image_type="DERIVED\\SECONDARY\\SUBTRACTION", agent="Gd"),
        s("map", "series 9", te=90, tr=4000, n=30, image_type="DERIVED\\PRIMARY\\DIFFUSION\\ADC"),
        s("few", "T2 tra", te=90, tr=4000, n=3),
    ]
    assert identify_sequences(series) == {}
    assert missing_sequences({}) == ["T1", "T1c", "T2", "FLAIR"]


def test_a_derived_reformat_is_used_only_without_an_acquired_series():
    reformat = s("der", "T1 post reformat", te=3, tr=8, n=180, image_type="DERIVED\\SECONDARY\\MPR", agent="Gd")
    assert identify_sequences([reformat]) == {"T1c": "der"}
    acquired = s("t1c", "series 12", te=12, tr=550, n=24, agent="Gd")  # physics only, 2-D, fewer slices
    assert identify_sequences([reformat, acquired]) == {"T1c": "t1c"}


def test_override_wins_and_is_not_reused():
    series = [
        s("t1", "T1 SE", te=10, tr=500),
        s("t1b", "T1 SE repeat", te=10, tr=500, n=200),
        s("t2", "T2 TSE", te=90, tr=4000),
    ]
    mapping = identify_sequences(series, overrides={"t1c": "t1b"})
    assert mapping["T1c"] == "t1b"
    assert mapping["T1"] == "t1"
    assert missing_sequences(mapping) == ["FLAIR"]


def test_from_dicom_json_and_dataset():
    item = {
        "0020000E": {"vr": "UI", "Value": ["1.2.3"]},
        "00080060": {"vr": "CS", "Value": ["MR"]},
        "0008103E": {"vr": "LO", "Value": ["Ax T2 FLAIR"]},
        "00180081": {"vr": "DS", "Value": [140.0]},
        "00180080": {"vr": "DS", "Value": [9000]},
        "00180082": {"vr": "DS", "Value": ["2250"]},
        "00080008": {"vr": "CS", "Value": ["ORIGINAL", "PRIMARY", "OTHER"]},
        "00201209": {"vr": "IS", "Value": [30]},
    }
    info = SeriesInfo.from_dicom_json(item)
    assert info.series_instance_uid == "1.2.3" and info.number_of_instances == 30
    assert info.inversion_time == 2250.0 and info.image_type == "ORIGINAL\\PRIMARY\\OTHER"
    assert identify_sequences([info]) == {"FLAIR": "1.2.3"}

    ds = Dataset()
    ds.SeriesInstanceUID = "1.2.4"
    ds.Modality = "MR"
    ds.SeriesDescription = "t1_se_tra_KM"
    ds.EchoTime = "12"
    ds.RepetitionTime = "600"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
    ds.ContrastBolusAgent = "Dotarem"
    info = SeriesInfo.from_dataset(ds, number_of_instances=24)
    assert info.echo_time == 12.0 and info.has_contrast_agent
    assert identify_sequences([info]) == {"T1c": "1.2.4"}
