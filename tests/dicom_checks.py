"""Checks of the synthetic DICOM a bundle's inference writes: valid (dciodvfy), and carrying no identifier of any
input (the inputs given to it carry identifying values, as a user's files may)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import torch

from gan_core.models import Model, build_network

SECRETS = ["Doe^Jane", "MRN123", "General Hospital", "Jane_Doe", "1.2.826.0.1.999"]


def secret_nifti(data: np.ndarray, affine: np.ndarray, path: Path) -> Path:
    """A NIfTI input whose header carries identifying values (as a user's file may)."""
    image = nib.Nifti1Image(data, affine)
    image.header["descrip"] = b"Doe^Jane MRN123"
    image.header["aux_file"] = b"MRN123"
    image.header["intent_name"] = b"General Hosp"
    image.header.extensions.append(nib.nifti1.Nifti1Extension(6, b"Doe^Jane General Hospital 1.2.826.0.1.999"))
    nib.save(image, path)
    return path


def _element_values(ds: pydicom.Dataset):
    for element in ds.iterall():
        if element.VR != "SQ" and element.tag != 0x7FE00010:
            yield str(element.value)
    for element in ds.file_meta:
        yield str(element.value)


def check_dicom(path: Path) -> pydicom.Dataset:
    """dciodvfy reports no error (when installed) and no element holds an input's identifier."""
    if shutil.which("dciodvfy"):
        report = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
        errors = [line for line in (report.stdout + report.stderr).splitlines() if line.startswith("Error")]
        assert not errors, (path, errors)
    ds = pydicom.dcmread(path)
    for value in _element_values(ds):
        assert not any(secret in value for secret in SECRETS), (path, value)
    assert ds.PatientName.family_name == "SYNTHETIC" and ds.SeriesDescription.startswith("SYNTHETIC")
    return ds


def model_of(network: dict, inputs: dict) -> Model:
    torch.manual_seed(0)
    return Model(Path("model.pt"), network, inputs, build_network(network).state_dict())


# ------------------------------------------------------------------ the synthetic DICOM writers' own tests
SHAPE = (40, 30)  # (X, Y): 40 columns, 30 rows
SHA = "0123456789abcdef" * 4


def rotated_affine(degrees=30.0, dx=0.7, dy=0.8, dz=2.5, origin=(12.0, -30.0, 40.0)) -> np.ndarray:
    """RAS affine of an axial slice rotated in-plane, third column along the DICOM slice normal."""
    a = np.deg2rad(degrees)
    row, col = np.array([np.cos(a), np.sin(a), 0.0]), np.array([-np.sin(a), np.cos(a), 0.0])  # LPS
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2] = row * dx, col * dy, np.cross(row, col) * dz
    lps[:3, 3] = origin
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


AFFINE = rotated_affine()


def provenance(bundle="radiogenomic_bundle", index=7, description=""):
    from gan_core.io.synthetic_dicom import SyntheticProvenance

    return SyntheticProvenance(bundle=bundle, bundle_version="1.2.3", model_sha256=SHA, index=index,
                               description=description)


def random_hu(seed=0):
    return np.random.default_rng(seed).uniform(-1024.0, 3071.0, SHAPE)


def dciodvfy_errors(path, iod: str) -> list[str]:
    """The lines of ``dciodvfy path`` that report an error; the validated IOD must be ``iod``."""
    import pytest

    exe = shutil.which("dciodvfy")
    if exe is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) not installed")
    result = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=60)
    lines = (result.stdout + result.stderr).splitlines()
    assert iod in lines, f"dciodvfy did not validate {path} as {iod}:\n" + "\n".join(lines)
    return [line for line in lines if "Error" in line]


def element_texts(ds: pydicom.Dataset):
    """Every element value of a dataset and its file meta, recursively into sequences, as text."""
    elements = list(ds.file_meta.iterall()) + list(ds.iterall())
    for element in elements:
        if element.VR == "SQ":
            continue  # iterall visits the items' elements
        value = element.value
        if isinstance(value, bytes):
            yield value.decode("latin-1")
        elif isinstance(value, (list, pydicom.multival.MultiValue)):
            yield "\\".join(str(v) for v in value)
        else:
            yield str(value)


def check_marked(path: Path, index: int, bundle: str) -> pydicom.Dataset:
    """The marking every synthetic object carries: pseudonymous patient, SYNTHETIC descriptions, the generator as
    equipment, dates of the moment of writing (UTC)."""
    from datetime import UTC, datetime

    ds = pydicom.dcmread(path)
    assert str(ds.PatientName) == f"SYNTHETIC^{index}" and ds.PatientID == f"SYN-{index}"
    assert ds.PatientBirthDate == "" and ds.PatientSex == ""
    assert ds.SeriesDescription.startswith("SYNTHETIC") and ds.StudyDescription.startswith("SYNTHETIC")
    assert ds.Manufacturer == "gan-bundles" and ds.ManufacturerModelName == bundle
    assert ds.SoftwareVersions == "1.2.3" and ds.DeviceSerialNumber == SHA[:16]
    moment = datetime.strptime(ds.ContentDate + ds.ContentTime.split(".")[0], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - moment).total_seconds()) < 600 and ds.TimezoneOffsetFromUTC == "+0000"
    return ds


def check_no_secret(path: Path, secrets: set[str]) -> None:
    """No element and no byte of a written file holds any of ``secrets``."""
    ds = pydicom.dcmread(path)
    texts = [t.lower() for t in element_texts(ds)]
    assert len(texts) > 40
    for secret in secrets:
        leaked = [t for t in texts if secret.lower() in t]
        assert not leaked, f"{path.name} carries {secret!r}: {leaked[:3]}"
        assert secret.encode() not in path.read_bytes(), f"{path.name} holds the bytes of {secret!r}"


def secret_inputs(folder: Path) -> tuple:
    """A NIfTI slice whose header carries text and a CT DICOM series of a real-looking patient, as MetaTensors
    (each carries its file's identity in its meta data), with every identifying value they hold."""
    from monai.transforms import LoadImage

    from gan_core.io.dicom_series import read_series, write_series

    secret_study = "1.3.6.1.4.1.5962.99.1.4242.4242"
    rng = np.random.default_rng(5)
    image = nib.Nifti1Image(rng.uniform(-1000, 1000, SHAPE).astype(np.float32), rotated_affine(degrees=10))
    image.header["descrip"] = b"PATIENT SECRET"
    image.header["aux_file"] = b"MRN123"
    nib.save(image, folder / "slice.nii.gz")
    source = write_series(rng.uniform(-1000, 1000, (*SHAPE, 2)), AFFINE, folder / "source", modality="CT",
                          patient_id="MRN123", study_uid=secret_study,
                          dataset_tags={"PatientName": "Doe^Jane", "InstitutionName": "General Hospital",
                                        "PatientBirthDate": "19700101", "AccessionNumber": "ACC98765"})
    headers = [pydicom.dcmread(f) for f in source]
    secrets = {"PATIENT SECRET", "Doe^Jane", "MRN123", secret_study, "General Hospital", "19700101", "ACC98765",
               str(headers[0].SeriesInstanceUID), str(headers[0].FrameOfReferenceUID),
               *(str(h.SOPInstanceUID) for h in headers)}
    nifti = LoadImage(image_only=True)(folder / "slice.nii.gz")
    dicom = read_series(folder / "source").to_metatensor()  # (1, X, Y, Z) with the series identity in meta
    return nifti, dicom, secrets
