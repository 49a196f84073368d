"""The model zoo's pre-merge checks of one bundle folder, in the order of its ``ci/verify_bundle.py`` (written here
from reading that script), plus the zoo user's ``monai.bundle.load``:

1. large files: every entry of ``large_files.yml`` present with its hash (the zoo "downloads" it with
   ``monai.apps.utils.download_url``, which checks an existing file's hash and fetches nothing);
2. necessary files ``configs/metadata.json`` and ``LICENSE``, preferred files ``models/model.pt`` and
   ``configs/inference.json``;
3. ``version`` in ``changelog``;
4. ``configs/metadata.json`` against the metadata schema (``monai.bundle.verify_metadata``);
5. ``ckpt_export`` of ``network_def`` from ``models/model.pt`` with the zoo's arguments (``bundle_root`` given, the
   bundle's folder first on ``sys.path``), then ``torch.jit.load`` of the exported file and of ``models/model.ts``;
6. ``monai.bundle.load(<name>, bundle_dir=<parent>, workflow_type="inference")``: the network with the weights of
   ``models/model.pt``, equal to the TorchScript file's outputs.

The shape check (``verify_net_in_out``) is left out as the zoo leaves it out for its generative bundles
(``exclude_verify_shape_list``: the generators take several inputs); each bundle's docs say so.

    python tests/zoo_checks.py BUNDLE_DIR SCHEMA_JSON     # prints one JSON line of what passed
"""

import json
import os
import shutil
import sys
from pathlib import Path

import torch
from monai.apps.utils import download_url
from monai.bundle import ConfigParser, ckpt_export, load, verify_metadata


def check(bundle: Path, schema: Path) -> dict:
    passed = []
    parser = ConfigParser()
    parser.read_config(str(bundle / "large_files.yml"))
    for entry in parser.get()["large_files"]:
        download_url(url=entry["url"], filepath=str(bundle / entry["path"]), hash_val=entry["hash_val"],
                     hash_type=entry["hash_type"])
    passed.append("large_files")

    for name in ("configs/metadata.json", "LICENSE", "models/model.pt", "configs/inference.json"):
        assert (bundle / name).is_file(), f"necessary or preferred file {name} missing"
    passed.append("files")

    meta_file = bundle / "configs" / "metadata.json"
    metadata = json.loads(meta_file.read_text())
    assert metadata["version"] in metadata["changelog"], "version not in changelog"
    passed.append("changelog")

    eval_dir = bundle / "eval"  # where the zoo puts the downloaded schema
    eval_dir.mkdir(exist_ok=True)
    shutil.copy(schema, eval_dir / "schema.json")
    verify_metadata(meta_file=str(meta_file), filepath=str(eval_dir / "schema.json"))
    shutil.rmtree(eval_dir)
    passed.append("metadata_schema")

    sys.path.insert(0, str(bundle))  # as verify_bundle.py does for a bundle's custom code
    verify_ts = bundle / "models" / "verify_model.ts"
    ckpt_export(net_id="network_def", filepath=str(verify_ts), ckpt_file=str(bundle / "models" / "model.pt"),
                meta_file=str(meta_file), config_file=str(bundle / "configs" / "inference.json"),
                bundle_root=str(bundle))
    exported = torch.jit.load(str(verify_ts))
    shipped = torch.jit.load(str(bundle / "models" / "model.ts"))
    verify_ts.unlink()
    passed.append("ckpt_export")

    network = load(bundle.name, bundle_dir=str(bundle.parent), workflow_type="inference")
    parser = ConfigParser()
    parser.read_meta(str(meta_file))
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser["bundle_root"] = str(bundle)
    torch.manual_seed(0)
    inputs = tuple(parser.get_parsed_content("export_inputs"))
    network.eval()
    with torch.no_grad():
        outputs = [network(*inputs), exported(*inputs), shipped(*inputs)]
    outputs = [o if isinstance(o, (tuple, list)) else (o,) for o in outputs]
    for a, b, c in zip(*outputs, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
        torch.testing.assert_close(a, c, atol=1e-5, rtol=0)
    passed.append("load_inference")
    return {"bundle": str(bundle), "passed": passed, "cwd": os.getcwd()}


if __name__ == "__main__":
    print(json.dumps(check(Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve())))
