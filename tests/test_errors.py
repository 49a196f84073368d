"""The error boundary: a user's mistake reaches them as one line `error: <where>: <what> -> <what to do>`."""

import ast
import errno
import subprocess
import sys

import pytest
from bundle_cases import CASES, ENV, ERROR_LINE, REPO

from gan_core.errors import BundleInputError, as_input_error, find_input_error


def test_message_names_file_field_and_hint():
    err = BundleInputError("tag missing", path="/data/a.dcm", field="PatientWeight", hint="add the weight")
    assert str(err) == "/data/a.dcm [PatientWeight]: tag missing -> add the weight"
    assert str(BundleInputError("bad", field="lr", hint="fix it")) == "lr: bad -> fix it"


def test_found_behind_the_wrapping_of_the_config_parser():
    try:
        try:
            raise BundleInputError("bad", field="x")
        except BundleInputError as inner:
            raise RuntimeError("Failed to evaluate ConfigExpression") from inner
    except RuntimeError as outer:
        assert find_input_error(outer).field == "x"
    assert find_input_error(ValueError("other")) is None


@pytest.mark.parametrize(("code", "words"), [(errno.ENOSPC, "no space left"), (errno.EACCES, "permission denied"),
                                            (errno.EROFS, "read-only")])
def test_the_environment_s_os_errors_become_user_errors_naming_the_file(code, words):
    try:
        try:
            raise OSError(code, "boom", "/out/checkpoint.pt")
        except OSError as inner:
            raise RuntimeError("Failed to evaluate ConfigExpression") from inner
    except RuntimeError as outer:
        error = as_input_error(outer)
    assert error.path == "/out/checkpoint.pt" and words in str(error)
    assert ERROR_LINE.match(f"error: {error}")
    assert as_input_error(OSError(errno.ENOENT, "missing", "x")) is None  # a bug or a missing check: traceback
    assert as_input_error(KeyError("x")) is None


def test_every_user_error_in_the_code_names_a_place_and_what_to_do():
    """Each BundleInputError raised by the library and tools has a file or setting and a hint, so the CLI line
    always has the `<where>: <what> -> <what to do>` form."""
    missing = []
    files = [*(REPO / "gan_core").rglob("*.py"), *(REPO / "tools").rglob("*.py")]
    files += [path for case in CASES for path in (case.root / "scripts").rglob("*.py")]
    for path in sorted(files):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "BundleInputError":
                keywords = {k.arg for k in node.keywords}
                if "hint" not in keywords or not keywords & {"path", "field"}:
                    missing.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not missing, missing


@pytest.mark.slow
def test_bundle_cli_prints_one_clear_line_for_a_missing_checkpoint(tmp_path):
    missing = tmp_path / "nowhere.pt"
    result = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "inference", "--config_file",
         str(CASES[0].configs / "inference.json"), "--ckpt_path", str(missing),
         "--output_dir", str(tmp_path)],
        cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {missing}: checkpoint file not found -> ") and ERROR_LINE.match(last)
    assert "Traceback" not in result.stderr


def test_a_network_setting_the_network_refuses_is_named_in_the_error(toy_bundle):
    from gan_core.models import build_network

    with pytest.raises(BundleInputError) as caught:
        build_network({"builder": "scripts.networks.TinyGenerator", "mode": "bogus"})
    assert caught.value.field == "network#mode" and "linear or tanh" in str(caught.value)
    with pytest.raises(BundleInputError) as caught:
        build_network({"builder": "scripts.networks.TinyGenerator", "no_such_argument": 1})
    assert caught.value.field == "network#no_such_argument"
    for builder in ("scripts.networks.NoSuchGenerator", "bundles.networks.radiogan.RadioGANGenerator", "os.system"):
        with pytest.raises(BundleInputError) as caught:  # another bundle's, an earlier version's, arbitrary code
            build_network({"builder": builder})
        assert caught.value.field == "network#builder"
