"""A user's own data with radiogenomic's commands: patients the chain cannot use are skipped with their reason,
damaged inputs are one error line, synthetic images carry no header field of their inputs, the README's own-data
commands leave the data untouched, and a model of another bundle is refused."""

import json
import shutil
import subprocess

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from bundle_cases import CASE_BY_NAME, ENV, ERROR_LINE, REPO, run, tree_hash, user_error

from gan_core.errors import BundleInputError
from gan_core.fileio import atomic_torch_save

RADIOGENOMIC = CASE_BY_NAME["radiogenomic"]


@pytest.fixture
def bundle_data_unchanged():
    """No command of a test may write a demo cohort into the bundle's own data folder."""
    before = sorted(p.name for p in (RADIOGENOMIC.root / "data").glob("*"))
    yield
    assert sorted(p.name for p in (RADIOGENOMIC.root / "data").glob("*")) == before


def test_a_patient_whose_data_the_chain_cannot_use_is_skipped_with_its_reason(monkeypatch):
    from monai.transforms import Compose
    from scripts import prepare as radiogenomic_prepare

    def no_lung(data):
        raise BundleInputError("no lung region", path="ct", field="lung", hint="check the CT")

    monkeypatch.setattr(radiogenomic_prepare, "load_patient", lambda entry: {"image": 0, "mask": 0})
    chain = Compose([no_lung])  # MONAI's Compose wraps the error in a RuntimeError
    with pytest.raises(BundleInputError, match="no lung region"):
        radiogenomic_prepare._patient_items({"patient_id": "P", "seg": "s"}, chain, chain, seed=0)


def test_a_corrupt_gene_table_and_a_multi_frame_dicom_are_user_errors(tmp_path):
    import gzip

    from scripts.genes import read_gene_table

    from gan_core.io.dicom_series import read_series

    table = tmp_path / "genes.txt.gz"
    table.write_bytes(gzip.compress(b"gene\tA\tB\nG1\t1\t2\n")[:-12] + b"garbage!")
    assert "unreadable gene table" in str(user_error(read_gene_table, table))
    from gan_core.io.dicom_series import write_series

    files = write_series(np.zeros((4, 4, 2)), np.eye(4), tmp_path / "series", modality="CT", patient_id="P",
                         study_uid="1.2.3")
    ds = pydicom.dcmread(files[0])
    ds.NumberOfFrames = 2
    ds.Modality = "RTDOSE"
    ds.save_as(files[0])
    error = user_error(read_series, tmp_path / "series")
    assert error.field == "NumberOfFrames" and "multi-frame" in str(error)


def test_synthetic_images_carry_no_header_field_of_their_inputs(tmp_path):
    from scripts.inference import synthesise

    from gan_core.models import Model, build_network

    network = {"builder": "scripts.networks.build_generator", "model_type": "proposed",
               "image_fusion": True, "num_genes": 4, "image_size": 32, "base_channels": 4, "code_dim": 8,
               "noise_dim": 2, "hidden": 8}
    model = Model(tmp_path / "m.pt", network, {"gene_names": list("abcd"), "gene_mean": [0.0] * 4,
                                                "gene_std": [1.0] * 4}, build_network(network).state_dict())
    image = nib.Nifti1Image(np.full((32, 32), -800.0, np.float32), np.diag([0.7, 0.7, 2.0, 1.0]))
    image.header["descrip"] = b"PATIENT Jane Doe MRN123"
    image.header["aux_file"] = b"jane.nii"
    image.header["intent_name"] = b"MRN123"
    image.header.extensions.append(nib.nifti1.Nifti1Extension(6, b"Jane Doe comment"))
    secret = tmp_path / "Jane_Doe_MRN123.nii.gz"
    nib.save(image, secret)
    np.save(tmp_path / "MRN123_genes.npy", np.zeros(4, np.float32))
    synthesise(model, [secret], [tmp_path / "MRN123_genes.npy"], tmp_path / "out")
    outputs = [p for p in (tmp_path / "out").iterdir() if p.suffix != ".json"]
    for path in outputs:
        assert "MRN123" not in path.name and "Jane" not in path.name
        if path.name.endswith(".nii.gz"):
            out = nib.load(path)
            assert out.header["descrip"].tobytes().startswith(b"SYNTHETIC")
            assert out.header["aux_file"].tobytes().strip(b"\0") == b"" and not out.header.extensions
            assert b"MRN123" not in out.header.binaryblock and b"Jane" not in out.header.binaryblock
            np.testing.assert_allclose(out.affine, image.affine)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["backgrounds"] == [str(secret)]  # the index -> input map stays with the user


@pytest.mark.slow
def test_the_readme_own_data_commands_train_on_that_data_and_leave_it_untouched(tmp_path, bundle_data_unchanged):
    """README "On your own data", run as written (plus toy sizes) on a real-format cohort elsewhere on disk."""
    raw = RADIOGENOMIC.make_raw(tmp_path / "NSCLC Radiogenomics")
    genes = tmp_path / "GSE103584_R01_NSCLC_RNAseq.txt.gz"
    import gzip

    genes.write_bytes(gzip.compress((raw / "genes.tsv").read_bytes()))
    (raw / "genes.tsv").unlink()
    (raw / "phenotypes.csv").unlink()
    (raw / "demo_cohort.json").unlink(missing_ok=True)
    raw_hash = tree_hash(raw)
    dataset = tmp_path / "prepared" / "radiogenomic"
    run(RADIOGENOMIC.cli("preparation", ["prepare.json"], {"raw_dir": str(raw), "genes_path": str(genes),
                                                          "dataset_dir": str(dataset), "image_size": 32}))
    dataset_hash = tree_hash(dataset)
    out = tmp_path / "runs" / "first"
    run(RADIOGENOMIC.cli("training", ["train.json"], {"dataset_dir": str(dataset), "output_dir": str(out),
                                                      **RADIOGENOMIC.toy["training"]}))
    assert tree_hash(dataset) == dataset_hash and tree_hash(raw) == raw_hash
    info = json.loads((out / "run_info.json").read_text())
    assert info["datalist"]["path"] == str(dataset / "datalist.json")
    assert (out / "checkpoints" / "checkpoint_latest.pt").is_file()
    assert not list(tmp_path.rglob("demo_cohort.json")) and not list(tmp_path.rglob("phenotypes.csv"))
    # a bad setting on the real command line: one error line, nothing written
    result = subprocess.run(RADIOGENOMIC.cli("training", ["train.json"], {"dataset_dir": str(dataset),
                                                                         "output_dir": str(tmp_path / "x"),
                                                                         "lr": -1}),
                            cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert ERROR_LINE.match(result.stderr.strip().splitlines()[-1]) and not (tmp_path / "x").exists()
    shutil.rmtree(out)


def test_a_model_of_another_bundle_is_refused_by_inference_and_export(tmp_path):
    from gan_core.export import export_model
    from gan_core.models import read_model

    network = {"builder": "scripts.networks.RadioGANGenerator", "latent_dim": 8}  # a generator of another bundle
    ckpt = tmp_path / "radiogan.pt"
    atomic_torch_save({"generator": {"w": torch.zeros(1)}, "network": {"network": network}}, ckpt)
    error = user_error(read_model, ckpt)
    assert "scripts/networks.py does not define" in str(error) and error.field == "network#builder"
    bundle = RADIOGENOMIC.copy_to(tmp_path / "my_copy_of_the_radiogenomic_bundle")  # any folder name
    assert "does not define" in str(user_error(export_model, bundle.root, ckpt))
    assert not (bundle.root / "models").exists()
