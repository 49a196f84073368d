"""scripts.suv on hand-built PET headers: every branch of REFERENCE.md section 4 and each missing tag."""

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from scripts.suv import suv_factor

from gan_core.errors import BundleInputError

WEIGHT, DOSE, HALF_LIFE = 70.0, 3.7e8, 6586.2
ONE_HOUR = WEIGHT * 1000.0 / (DOSE * 2.0 ** (-3600.0 / HALF_LIFE))  # factor for a 60 min uptake


def _headers(n=3, **top) -> list[Dataset]:
    """n slices of a BQML / START series: injection 09:00, series and acquisitions 10:00 on 2024-01-10."""
    out = []
    for k in range(n):
        rp = Dataset()
        rp.RadiopharmaceuticalStartDateTime = "20240110090000"
        rp.RadiopharmaceuticalStartTime = "090000"
        rp.RadionuclideTotalDose = str(DOSE)
        rp.RadionuclideHalfLife = str(HALF_LIFE)
        ds = Dataset()
        ds.filename = f"/data/pet/1-{k + 1:03d}.dcm"
        ds.Modality = "PT"
        ds.Units = "BQML"
        ds.CorrectedImage = ["ATTN", "DECY"]
        ds.DecayCorrection = "START"
        ds.PatientWeight = str(WEIGHT)
        ds.SeriesDate, ds.SeriesTime = "20240110", "100000"
        ds.AcquisitionDate, ds.AcquisitionTime = "20240110", "100000"
        ds.RadiopharmaceuticalInformationSequence = Sequence([rp])
        for keyword, value in top.items():
            if value is None:
                delattr(ds, keyword)
            else:
                setattr(ds, keyword, value)
        out.append(ds)
    return out


def _set_rp(headers, **values):
    for ds in headers:
        for keyword, value in values.items():
            rp = ds.RadiopharmaceuticalInformationSequence[0]
            if value is None:
                delattr(rp, keyword)
            else:
                setattr(rp, keyword, value)
    return headers


def test_bqml_start_one_hour():
    result = suv_factor(_headers())
    assert result.factors.shape == (3,)
    np.testing.assert_allclose(result.factors, ONE_HOUR, rtol=1e-12)
    assert result.decay_s == 3600.0 and "START" in result.branch
    assert "RadiopharmaceuticalStartDateTime" in result.describe()


def test_datetime_preferred_over_time():
    # The time-only tag says 08:00 (2 h): the DateTime (09:00, 1 h) must win.
    headers = _set_rp(_headers(), RadiopharmaceuticalStartTime="080000")
    np.testing.assert_allclose(suv_factor(headers).factors, ONE_HOUR, rtol=1e-12)


def test_time_only_injection_uses_scan_date():
    headers = _set_rp(_headers(), RadiopharmaceuticalStartDateTime=None)
    result = suv_factor(headers)
    np.testing.assert_allclose(result.factors, ONE_HOUR, rtol=1e-12)
    assert "RadiopharmaceuticalStartTime" in result.describe()


def test_midnight_crossing_with_time_tags_only():
    # Injected 23:30 on the 10th, series at 00:30 on the 11th: 1 h, not -23 h.
    headers = _headers(SeriesDate="20240111", SeriesTime="003000", AcquisitionDate="20240111", AcquisitionTime="003000")
    _set_rp(headers, RadiopharmaceuticalStartDateTime=None, RadiopharmaceuticalStartTime="233000")
    result = suv_factor(headers)
    assert result.decay_s == 3600.0
    np.testing.assert_allclose(result.factors, ONE_HOUR, rtol=1e-12)
    assert "day before" in result.describe()


def test_midnight_crossing_with_datetime():
    headers = _headers(SeriesDate="20240111", SeriesTime="003000", AcquisitionDate="20240111", AcquisitionTime="003000")
    _set_rp(headers, RadiopharmaceuticalStartDateTime="20240110233000", RadiopharmaceuticalStartTime="233000")
    np.testing.assert_allclose(suv_factor(headers).factors, ONE_HOUR, rtol=1e-12)


def test_admin_uses_undecayed_dose():
    result = suv_factor(_headers(DecayCorrection="ADMIN"))
    np.testing.assert_allclose(result.factors, WEIGHT * 1000.0 / DOSE, rtol=1e-12)
    assert "ADMIN" in result.branch


def test_series_time_after_first_acquisition_uses_earliest_acquisition():
    headers = _headers(SeriesTime="120000")  # re-processed two hours later
    headers[1].AcquisitionTime = "100500"
    headers[2].AcquisitionTime = "101000"
    result = suv_factor(headers)
    assert result.decay_s == 3600.0
    assert "earliest acquisition" in result.describe()


def test_acquisition_datetime_preferred():
    headers = _headers(SeriesTime="120000")
    for ds in headers:
        ds.AcquisitionDateTime = "20240110100000"
        ds.AcquisitionTime = "113000"  # contradicts the DateTime; the DateTime wins
    assert suv_factor(headers).decay_s == 3600.0


def test_timezone_offset_applied_where_needed():
    # Injection in UTC (08:00Z); series on the local clock 10:00 at UTC+1 -> 09:00Z: one hour, not two.
    headers = _headers(TimezoneOffsetFromUTC="+0100")
    _set_rp(headers, RadiopharmaceuticalStartDateTime="20240110080000+0000")
    assert suv_factor(headers).decay_s == 3600.0
    # Without the tag the local clock of both is the only reading: two hours.
    headers = _set_rp(_headers(), RadiopharmaceuticalStartDateTime="20240110080000+0000")
    assert suv_factor(headers).decay_s == 7200.0


def test_philips_cnts_suv_scale_factor():
    headers = _headers(Units="CNTS")
    for k, ds in enumerate(headers):
        ds.private_block(0x7053, "Philips PET Private Group", create=True).add_new(0x00, "DS", f"0.00012{k}")
    result = suv_factor(headers)
    np.testing.assert_allclose(result.factors, [0.000120, 0.000121, 0.000122])
    assert "(7053,1000)" in result.branch


def test_philips_cnts_activity_concentration_factor():
    headers = _headers(Units="CNTS")
    for ds in headers:
        ds.private_block(0x7053, "Philips PET Private Group", create=True).add_new(0x09, "DS", "0.4")
    result = suv_factor(headers)
    np.testing.assert_allclose(result.factors, 0.4 * ONE_HOUR, rtol=1e-12)
    assert "(7053,1009)" in result.branch


def test_philips_private_value_as_raw_bytes():
    # Read with an unknown VR the private value arrives as bytes.
    headers = _headers(Units="CNTS")
    for ds in headers:
        ds.add_new((0x7053, 0x0010), "LO", "Philips PET Private Group")
        ds.add_new((0x7053, 0x1000), "UN", b"0.000321")
    np.testing.assert_allclose(suv_factor(headers).factors, 0.000321)


def test_cnts_without_private_factor_names_it():
    with pytest.raises(BundleInputError) as err:
        suv_factor(_headers(Units="CNTS"))
    assert err.value.field == "(7053,1000)" and "/data/pet/1-001.dcm" in str(err.value)


def test_gml_is_already_suv():
    result = suv_factor(_headers(Units="GML", PatientWeight=None))
    np.testing.assert_array_equal(result.factors, 1.0)


@pytest.mark.parametrize("tag", ["PatientWeight", "Units", "CorrectedImage", "DecayCorrection",
                                 "RadiopharmaceuticalInformationSequence"])
def test_missing_top_level_tag_is_named(tag):
    with pytest.raises(BundleInputError) as err:
        suv_factor(_headers(**{tag: None}), "/data/pet")
    assert err.value.field == tag
    assert tag in str(err.value) and "/data/pet/1-001.dcm" in str(err.value)


@pytest.mark.parametrize("tag", ["RadionuclideTotalDose", "RadionuclideHalfLife"])
def test_missing_radiopharmaceutical_tag_is_named(tag):
    with pytest.raises(BundleInputError) as err:
        suv_factor(_set_rp(_headers(), **{tag: None}))
    assert err.value.field == tag and "1-001.dcm" in str(err.value)


def test_missing_injection_time_is_named():
    headers = _set_rp(_headers(), RadiopharmaceuticalStartDateTime=None, RadiopharmaceuticalStartTime=None)
    with pytest.raises(BundleInputError) as err:
        suv_factor(headers)
    assert err.value.field == "RadiopharmaceuticalStartDateTime"
    assert "RadiopharmaceuticalStartTime" in str(err.value)


def test_missing_path_falls_back_to_the_folder():
    headers = _headers(PatientWeight=None)
    for ds in headers:
        del ds.filename
    with pytest.raises(BundleInputError, match="/some/series"):
        suv_factor(headers, "/some/series")


@pytest.mark.parametrize(
    "change, field",
    [
        ({"CorrectedImage": ["ATTN"]}, "CorrectedImage"),  # not decay corrected
        ({"Units": "PROPCNTS"}, "Units"),
        ({"DecayCorrection": "NONE"}, "DecayCorrection"),
        ({"PatientWeight": "0"}, "PatientWeight"),
        ({"Modality": "CT"}, "Modality"),
        ({"SeriesTime": "080000", "AcquisitionTime": "080000"}, "RadiopharmaceuticalStartDateTime"),  # before inj.
    ],
)
def test_contradictory_or_invalid_tags(change, field):
    with pytest.raises(BundleInputError) as err:
        suv_factor(_headers(**change))
    assert err.value.field == field


def test_series_level_tag_differing_between_slices():
    headers = _headers()
    headers[2].PatientWeight = "71"
    with pytest.raises(BundleInputError) as err:
        suv_factor(headers)
    assert err.value.field == "PatientWeight" and "1-003.dcm" in str(err.value)
    headers = _headers()
    headers[1].RadiopharmaceuticalInformationSequence[0].RadionuclideTotalDose = "1e8"
    with pytest.raises(BundleInputError, match="RadionuclideTotalDose"):
        suv_factor(headers)


@pytest.mark.filterwarnings("ignore:Invalid value for VR TM")
def test_unparseable_time_is_named():
    with pytest.raises(BundleInputError) as err:
        suv_factor(_headers(SeriesTime="10:00:00"))
    assert err.value.field == "SeriesTime"


def test_factor_from_a_written_file_round_trip(tmp_path):
    # Tags survive a real DICOM write/read (DS strings, sequences, the private block).
    headers = _headers(1, Units="CNTS")
    ds = headers[0]
    ds.private_block(0x7053, "Philips PET Private Group", create=True).add_new(0x00, "DS", "0.000456")
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.128", pydicom.uid.generate_uid()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    ds.save_as(tmp_path / "x.dcm", enforce_file_format=True)
    read = pydicom.dcmread(tmp_path / "x.dcm")
    np.testing.assert_allclose(suv_factor([read]).factors, 0.000456)
