"""SUV (body weight) conversion factors from the headers of a PET DICOM series.

Follows the QIBA vendor-neutral SUV pseudo-code (see REFERENCE.md section 4)::

    SUVbw = activity [Bq/ml] * PatientWeight [kg] * 1000 / decayed dose [Bq]
    decayed dose = dose * 2 ** (-(t_scan - t_inj) / T1/2)     (DecayCorrection START)
                 = dose                                      (DecayCorrection ADMIN)

where ``activity`` is the real-world value of a slice (stored * RescaleSlope + RescaleIntercept, which
``gan_core.io.dicom_series.read_series`` already applies per slice). Units BQML is the normal case;
Philips Units CNTS carry a private SUV scale factor (7053,1000), or an activity concentration factor
(7053,1009) that turns the real-world values into Bq/ml; Units GML are already SUV.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from os import PathLike

import numpy as np
import pydicom
from pydicom.valuerep import DA, DT, TM

from gan_core.errors import BundleInputError

PHILIPS_SUV_SCALE = (0x7053, 0x1000)
PHILIPS_ACTIVITY_SCALE = (0x7053, 0x1009)

# Series-level tags that every slice of one series must agree on (top level of the dataset).
_SERIES_LEVEL = ("Units", "CorrectedImage", "DecayCorrection", "PatientWeight", "SeriesDate", "SeriesTime",
                 "TimezoneOffsetFromUTC")
_RADIOPHARMACEUTICAL_LEVEL = ("RadionuclideTotalDose", "RadionuclideHalfLife", "RadiopharmaceuticalStartDateTime",
                              "RadiopharmaceuticalStartTime")


@dataclass
class SUVFactor:
    """How to turn the real-world values of each slice into SUVbw.

    ``factors[k]`` (g/ml per unit of the real-world value) multiplies slice k (the k-th header, sorted
    along the slice normal): ``suv[..., k] = (stored * slope_k + intercept_k) * factors[k]``.
    """

    factors: np.ndarray  # (Z,) float64
    units: str  # the series' Units (0054,1001)
    branch: str  # one line: which rule was applied
    explanation: list[str] = field(default_factory=list)  # the tags and values used, one per line
    weight_kg: float | None = None
    dose_bq: float | None = None
    half_life_s: float | None = None
    decay_correction: str | None = None
    injection_time: datetime | None = None
    scan_time: datetime | None = None
    decay_s: float | None = None  # t_scan - t_inj in seconds (None where not needed)

    @property
    def factor(self) -> float:
        """The factor shared by all slices (the first slice's where they differ, e.g. Philips per slice)."""
        return float(self.factors[0])

    def describe(self) -> str:
        """Multi-line human-readable account: factor, branch, tags used."""
        spread = "" if np.all(self.factors == self.factors[0]) else (
            f" (per slice, from {self.factors.min():.6g} to {self.factors.max():.6g})")
        lines = [f"SUV factor {self.factor:.8g}{spread}", f"branch: {self.branch}"]
        return "\n".join(lines + [f"  {line}" for line in self.explanation])


def _file_of(ds: pydicom.Dataset, path) -> str:
    return str(getattr(ds, "filename", None) or path)


def _missing(tag: str, ds: pydicom.Dataset, path, hint: str) -> BundleInputError:
    return BundleInputError(f"PET SUV needs the tag {tag}, which is missing or empty",
                            path=_file_of(ds, path), field=tag, hint=hint)


def _positive_float(value, tag: str, ds: pydicom.Dataset, path, hint: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BundleInputError(f"{tag} is not a number: {value!r}", path=_file_of(ds, path), field=tag,
                               hint=hint) from None
    if not np.isfinite(number) or number <= 0:
        raise BundleInputError(f"{tag} must be positive, got {number}", path=_file_of(ds, path), field=tag,
                               hint=hint)
    return number


def _value(ds: pydicom.Dataset, keyword: str):
    """The value of a top-level keyword, or None where absent or empty."""
    value = ds.get(keyword)
    return None if value is None or value == "" else value


def _private_float(ds: pydicom.Dataset, tag: tuple[int, int]) -> float | None:
    """A private DS value (decoded text, or raw bytes where the VR was unknown); None where absent or 0."""
    if tag not in ds:
        return None
    value = ds[tag].value
    if isinstance(value, bytes):
        text = value.decode("ascii", errors="ignore").strip("\x00 ")
        value = text if text else None
    if value is None or value == "":
        return None
    number = float(value)
    return number if number != 0 else None


def _tz(ds: pydicom.Dataset, path) -> timezone | None:
    """TimezoneOffsetFromUTC (0008,0201) as a tzinfo, or None where absent."""
    text = _value(ds, "TimezoneOffsetFromUTC")
    if text is None:
        return None
    text = str(text).strip()
    try:
        sign = -1 if text[0] == "-" else 1
        hours, minutes = int(text[1:3]), int(text[3:5])
    except (ValueError, IndexError):
        raise BundleInputError(f"TimezoneOffsetFromUTC is not &HHMM: {text!r}", path=_file_of(ds, path),
                               field="TimezoneOffsetFromUTC", hint='fix the tag (e.g. +0100) or remove it') from None
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def _parse(kind, text, tag: str, ds: pydicom.Dataset, path):
    try:
        return kind(str(text).strip())
    except (ValueError, TypeError):
        raise BundleInputError(f"{tag} is not a valid DICOM {kind.__name__}: {text!r}", path=_file_of(ds, path),
                               field=tag, hint="fix the tag's value in the series") from None


def _combine(day: date, clock: time, tz: timezone | None) -> datetime:
    return datetime.combine(day, time(clock.hour, clock.minute, clock.second, clock.microsecond), tzinfo=tz)


def _plain(moment: datetime) -> datetime:
    """A plain datetime copy (pydicom's DT/TM subclasses carry their original string)."""
    return datetime(moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second,
                    moment.microsecond, tzinfo=moment.tzinfo)


def _acquisition_time(ds: pydicom.Dataset, path, tz: timezone | None) -> tuple[datetime, str] | None:
    """AcquisitionDateTime where present (preferred), else AcquisitionDate (or SeriesDate) + AcquisitionTime."""
    if _value(ds, "AcquisitionDateTime") is not None:
        moment = _plain(_parse(DT, ds.AcquisitionDateTime, "AcquisitionDateTime", ds, path))
        return (moment if moment.tzinfo else moment.replace(tzinfo=tz)), "AcquisitionDateTime"
    if _value(ds, "AcquisitionTime") is None:
        return None
    day_tag = "AcquisitionDate" if _value(ds, "AcquisitionDate") is not None else "SeriesDate"
    if _value(ds, day_tag) is None:
        return None
    day = _parse(DA, ds.get(day_tag), day_tag, ds, path)
    clock = _parse(TM, ds.AcquisitionTime, "AcquisitionTime", ds, path)
    return _combine(day, clock, tz), f"{day_tag} + AcquisitionTime"


def _check_one_series(headers: list[pydicom.Dataset], path) -> None:
    """Series-level SUV tags must be identical on every slice; a difference is a contradiction."""
    first = headers[0]
    first_rp = _radiopharmaceutical(first)
    for ds in headers[1:]:
        for tag in _SERIES_LEVEL:
            if ds.get(tag) != first.get(tag):
                raise BundleInputError(f"{tag} differs between slices of one series ({first.get(tag)!r} in "
                                       f"{_file_of(first, path)}, {ds.get(tag)!r} here)", path=_file_of(ds, path),
                                       field=tag, hint="the folder must hold one PET series")
        rp = _radiopharmaceutical(ds)
        for tag in _RADIOPHARMACEUTICAL_LEVEL:
            a = None if first_rp is None else first_rp.get(tag)
            b = None if rp is None else rp.get(tag)
            if a != b:
                raise BundleInputError(f"RadiopharmaceuticalInformationSequence {tag} differs between slices "
                                       f"({a!r} vs {b!r})", path=_file_of(ds, path), field=tag,
                                       hint="the folder must hold one PET series")


def _radiopharmaceutical(ds: pydicom.Dataset) -> pydicom.Dataset | None:
    seq = ds.get("RadiopharmaceuticalInformationSequence")
    return seq[0] if seq else None


def suv_factor(headers: list[pydicom.Dataset], path: str | PathLike | None = None) -> SUVFactor:
    """SUVbw factors for a PET series.

    Args:
        headers: one dataset per slice (pixel data not needed), sorted along the slice normal.
        path: the series folder, named in errors where a dataset has no ``filename``.

    Returns:
        :class:`SUVFactor` with one factor per slice and the branch and tags used.

    Raises:
        BundleInputError: a missing or contradictory tag, naming the tag and the file.
    """
    if not headers:
        raise BundleInputError("no PET slices to compute SUV from", path=path,
                               hint='point the path at a PET series folder')
    first = headers[0]
    if first.get("Modality") != "PT":
        raise BundleInputError(f"SUV needs a PET series (Modality PT), got {first.get('Modality')!r}",
                               path=_file_of(first, path), field="Modality",
                               hint='point the path at the PET series, not another modality')
    _check_one_series(headers, path)

    corrected = first.get("CorrectedImage")
    corrected = [] if corrected is None else ([corrected] if isinstance(corrected, str) else list(corrected))
    if not corrected:
        raise _missing("CorrectedImage", first, path, "SUV needs attenuation- and decay-corrected images")
    if "ATTN" not in corrected or "DECY" not in corrected:
        raise BundleInputError(f"CorrectedImage {corrected} lacks ATTN and/or DECY: the image is not attenuation "
                               "and decay corrected, so SUV is undefined", path=_file_of(first, path),
                               field="CorrectedImage", hint='use the attenuation- and decay-corrected PET series')
    units = _value(first, "Units")
    if units is None:
        raise _missing("Units", first, path, "expected BQML (Bq/ml), CNTS (Philips) or GML")
    units = str(units).strip().upper()
    explanation = [f"Units = {units}", "CorrectedImage = " + "\\".join(corrected)]
    n = len(headers)

    if units == "GML":
        return SUVFactor(np.ones(n), units, "Units GML: values are already SUVbw (g/ml), factor 1", explanation)

    if units == "CNTS":
        suv_scales = [_private_float(ds, PHILIPS_SUV_SCALE) for ds in headers]
        if all(v is not None for v in suv_scales):
            explanation.append("Philips private (7053,1000) SUV Scale Factor on every slice")
            return SUVFactor(np.asarray(suv_scales, dtype=np.float64), units,
                             "Units CNTS: Philips SUV scale factor (7053,1000) x real-world value", explanation)
        activity_scales = [_private_float(ds, PHILIPS_ACTIVITY_SCALE) for ds in headers]
        if not all(v is not None for v in activity_scales):
            raise BundleInputError("Units CNTS needs the Philips private SUV scale factor (7053,1000) or the "
                                   "activity concentration scale factor (7053,1009) on every slice",
                                   path=_file_of(first, path), field="(7053,1000)",
                                   hint="export the series in BQML from the scanner console")
        explanation.append("Philips private (7053,1009) Activity Concentration Scale Factor x real-world "
                           "value -> Bq/ml, then as BQML")
        bqml = _bqml(headers, path, explanation)
        bqml.factors = bqml.factors * np.asarray(activity_scales, dtype=np.float64)
        bqml.units = units
        bqml.branch = "Units CNTS: Philips (7053,1009) -> Bq/ml, then " + bqml.branch
        return bqml

    if units != "BQML":
        raise BundleInputError(f"Units {units!r} is not supported for SUV", path=_file_of(first, path),
                               field="Units", hint="expected BQML (Bq/ml), CNTS (Philips) or GML")
    return _bqml(headers, path, explanation)


def _bqml(headers: list[pydicom.Dataset], path, explanation: list[str]) -> SUVFactor:
    """Body-weight SUV factor for activity in Bq/ml (the QIBA main branch)."""
    first = headers[0]
    weight = _value(first, "PatientWeight")
    if weight is None:
        raise _missing("PatientWeight", first, path, "add the patient's weight in kg (0010,1030)")
    weight = _positive_float(weight, "PatientWeight", first, path, "the weight in kg")
    rp = _radiopharmaceutical(first)
    if rp is None:
        raise _missing("RadiopharmaceuticalInformationSequence", first, path,
                       "the series needs the injected dose, half-life and injection time (0054,0016)")
    if _value(rp, "RadionuclideTotalDose") is None:
        raise _missing("RadionuclideTotalDose", first, path, "the injected activity in Bq (0018,1074)")
    dose = _positive_float(rp.RadionuclideTotalDose, "RadionuclideTotalDose", first, path, "activity in Bq")
    if _value(rp, "RadionuclideHalfLife") is None:
        raise _missing("RadionuclideHalfLife", first, path, "half-life in s (F-18: 6586.2) (0018,1075)")
    half_life = _positive_float(rp.RadionuclideHalfLife, "RadionuclideHalfLife", first, path, "seconds")
    decay_correction = _value(first, "DecayCorrection")
    if decay_correction is None:
        raise _missing("DecayCorrection", first, path, "START or ADMIN (0054,1102)")
    decay_correction = str(decay_correction).strip().upper()
    explanation += [f"PatientWeight = {weight} kg", f"RadionuclideTotalDose = {dose:.6g} Bq",
                    f"RadionuclideHalfLife = {half_life} s", f"DecayCorrection = {decay_correction}"]
    result = SUVFactor(np.zeros(len(headers)), "BQML", "", explanation, weight_kg=weight, dose_bq=dose,
                       half_life_s=half_life, decay_correction=decay_correction)

    if decay_correction == "ADMIN":
        decayed = dose
        result.branch = "BQML, DecayCorrection ADMIN: images refer to the injection time, decayed dose = dose"
    elif decay_correction == "START":
        injection, scan = _injection_and_scan_times(headers, rp, path, explanation)
        decay_s = (scan - injection).total_seconds()
        if decay_s < 0:
            raise BundleInputError(f"injection ({injection.isoformat()}) is after the scan start "
                                   f"({scan.isoformat()})", path=_file_of(first, path),
                                   field="RadiopharmaceuticalStartDateTime",
                                   hint="check the injection and series date/time tags")
        decayed = dose * 2.0 ** (-decay_s / half_life)
        result.injection_time, result.scan_time, result.decay_s = injection, scan, decay_s
        explanation.append(f"decay time t_scan - t_inj = {decay_s:.1f} s -> decayed dose {decayed:.6g} Bq")
        result.branch = "BQML, DecayCorrection START: decayed dose = dose * 2^(-(t_scan - t_inj) / T1/2)"
    else:
        raise BundleInputError(f"DecayCorrection {decay_correction!r} is not START or ADMIN (and CorrectedImage "
                               "says DECY)", path=_file_of(first, path), field="DecayCorrection",
                               hint='set DecayCorrection to START or ADMIN')
    result.factors = np.full(len(headers), weight * 1000.0 / decayed, dtype=np.float64)
    return result


def _injection_and_scan_times(headers: list[pydicom.Dataset], rp: pydicom.Dataset, path,
                              explanation: list[str]) -> tuple[datetime, datetime]:
    """(t_inj, t_scan) following QIBA: DT tags first, midnight crossing, re-processed SeriesTime, time zones."""
    first = headers[0]
    tz = _tz(first, path)
    if tz is not None:
        explanation.append(f"TimezoneOffsetFromUTC = {first.TimezoneOffsetFromUTC} applied to date + time tags")

    series = None
    if _value(first, "SeriesDate") is not None and _value(first, "SeriesTime") is not None:
        series = _combine(_parse(DA, first.SeriesDate, "SeriesDate", first, path),
                          _parse(TM, first.SeriesTime, "SeriesTime", first, path), tz)
    acquisitions = [a for a in (_acquisition_time(ds, path, tz) for ds in headers) if a is not None]
    earliest = min(acquisitions, key=lambda a: _comparable(a[0], series))[0] if acquisitions else None
    if series is None and earliest is None:
        raise _missing("SeriesTime", first, path, "SeriesDate/SeriesTime or AcquisitionDate/Time give the scan time")
    if series is None:
        scan = earliest
        explanation.append(f"scan time = earliest acquisition {earliest.isoformat()} (no SeriesDate/SeriesTime)")
    elif earliest is not None and _comparable(series, earliest) > _comparable(earliest, series):
        scan = earliest
        explanation.append(f"SeriesDate/Time {series.isoformat()} is after the earliest acquisition "
                           f"{earliest.isoformat()} (re-processed series): scan time = earliest acquisition")
    else:
        scan = series
        explanation.append(f"scan time = SeriesDate + SeriesTime = {series.isoformat()}")

    if _value(rp, "RadiopharmaceuticalStartDateTime") is not None:
        injection = _plain(_parse(DT, rp.RadiopharmaceuticalStartDateTime, "RadiopharmaceuticalStartDateTime",
                                  first, path))
        if injection.tzinfo is None:
            injection = injection.replace(tzinfo=tz)
        explanation.append(f"injection = RadiopharmaceuticalStartDateTime = {injection.isoformat()} "
                           "(preferred over the time-only tag)")
    elif _value(rp, "RadiopharmaceuticalStartTime") is not None:
        clock = _parse(TM, rp.RadiopharmaceuticalStartTime, "RadiopharmaceuticalStartTime", first, path)
        injection = _combine(scan.date(), clock, scan.tzinfo)
        if injection > scan:
            injection -= timedelta(days=1)
            explanation.append(f"injection = RadiopharmaceuticalStartTime {clock.isoformat()} on the day before "
                               "the scan (injected before midnight, scanned after)")
        else:
            explanation.append(f"injection = scan date + RadiopharmaceuticalStartTime = {injection.isoformat()}")
    else:
        raise _missing("RadiopharmaceuticalStartDateTime", first, path,
                       "the injection time: RadiopharmaceuticalStartDateTime (0018,1078) or "
                       "RadiopharmaceuticalStartTime (0018,1072)")
    if (injection.tzinfo is None) != (scan.tzinfo is None):
        # One time carries its own UTC offset and the other is local with no TimezoneOffsetFromUTC: read both
        # on the local clock of the one that has an offset.
        injection, scan = injection.replace(tzinfo=None), scan.replace(tzinfo=None)
        explanation.append("one time has a UTC offset, the other none (no TimezoneOffsetFromUTC): both read as "
                           "local clock times")
    return injection, scan


def _comparable(moment: datetime, other: datetime | None) -> datetime:
    """``moment`` in a form that compares with ``other`` (drops the offset where only one has one)."""
    if other is not None and (moment.tzinfo is None) != (other.tzinfo is None):
        return moment.replace(tzinfo=None)
    return moment
