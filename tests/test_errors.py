"""Input errors reach the user as one line naming file and field, also through MONAI's bundle CLI."""

import subprocess
import sys

import pytest
from bundle_cases import ENV, REPO

from bundles.errors import BundleInputError, find_input_error


def test_message_names_file_field_and_hint():
    err = BundleInputError("tag missing", path="/data/a.dcm", field="PatientWeight", hint="add the weight")
    assert str(err) == "/data/a.dcm: [PatientWeight] tag missing -> add the weight"


def test_found_behind_the_wrapping_of_the_config_parser():
    try:
        try:
            raise BundleInputError("bad", field="x")
        except BundleInputError as inner:
            raise RuntimeError("Failed to evaluate ConfigExpression") from inner
    except RuntimeError as outer:
        assert find_input_error(outer).field == "x"
    assert find_input_error(ValueError("other")) is None


@pytest.mark.slow
def test_bundle_cli_prints_one_clear_line_for_a_missing_checkpoint(tmp_path):
    missing = tmp_path / "nowhere.pt"
    result = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "inference", "--config_file",
         str(REPO / "radiogan_bundle" / "configs" / "inference.json"), "--ckpt_path", str(missing),
         "--output_dir", str(tmp_path)],
        cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0
    assert f"error: {missing}: checkpoint file not found" in result.stderr
    assert "Traceback" not in result.stderr
