"""`make demo`: prepare, train, export, infer and evaluate every bundle on its built-in demo cohort.

Runs the commands the README documents, for every bundle folder beside this tool's folder (``*/configs/metadata.json``
with ``scripts/``), one bundle after another, on the demo path: each bundle's own default folders
(``<bundle>/data/raw``, ``<bundle>/data/prepared``, ``<bundle>/outputs``, ``<bundle>/models``). A bundle's steps:
``preparation``; ``training`` then ``export``; for every training overlay ``configs/train_<variant>.json`` (radiogenomic's
MC-GAN baseline), that training and ``export`` with ``configs/export_<variant>.json``; ``inference``; ``evaluation``.
Run twice, it says for every step what it does with what is already there:

- preparation: a demo dataset this tool prepared is kept, unless another version of the bundle prepared it: then it
  is prepared anew (a dataset the demo did not write is used as it is, never replaced);
- training: a demo run this tool started is resumed (a finished one trains nothing more), unless it was trained by
  another version of the bundle, with other demo settings or on a dataset since prepared anew: then the demo's own
  run is trained anew;
- export: models/<name>.* is replaced only if this tool wrote it; a model of yours there stops the demo;
- inference and evaluation: replace their own earlier outputs.

Everything the demo creates is listed in ``.demo_outputs.json`` at the repository root; ``make clean-outputs``
(``python tools/demo.py --clean``) removes exactly those paths, nothing else.

    python tools/demo.py [--bundles NAME ...] [--epochs N] [--list] [--clean]
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from gan_core.bundle import find_bundles, read_configs
from gan_core.runs import TRAINING_OUTPUTS

REPO = Path(__file__).resolve().parents[1]
BUNDLES = {folder.name.removesuffix("_bundle"): folder for folder in find_bundles(REPO)}
MANIFEST = REPO / ".demo_outputs.json"


def _remove(path: Path) -> None:
    """Remove a file or a folder tree the demo wrote; nothing when it is gone already."""
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _manifest() -> dict:
    manifest = json.loads(MANIFEST.read_text()) if MANIFEST.is_file() else {}
    return {"paths": [], "containers": [], "trainings": {}, "preparations": {}, **manifest}


def _save(manifest: dict) -> None:
    MANIFEST.write_text(json.dumps(manifest, indent=1))


def created() -> list[str]:
    """The paths the demo created so far (absolute)."""
    return _manifest()["paths"]


def _record(path: Path, kind: str = "paths") -> None:
    manifest = _manifest()
    if str(path) not in manifest[kind]:
        manifest[kind].append(str(path))
        _save(manifest)


def claim(path: Path) -> bool:
    """Before a step writes ``path``: record it when it does not exist yet; True when the demo owns it. Folders
    the step creates on the way (``models/``, ``data/``) are recorded as containers, removed only when empty."""
    for parent in reversed(path.parents):
        if not parent.exists():
            _record(parent, "containers")
    if not path.exists():
        _record(path)
        return True
    return str(path) in created()


def run(command: list[str]) -> None:
    print(f"\n$ {shlex.join(command)}", flush=True)
    result = subprocess.run(command, cwd=REPO)
    if result.returncode != 0:
        sys.exit(result.returncode)


def bundle_run(run_id: str, config: str, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "monai.bundle", "run", run_id, "--config_file", config, *overrides]


def bundle_version(root: Path) -> str:
    return json.loads((root / "configs" / "metadata.json").read_text())["version"]


def step_prepare(root: Path) -> None:
    dataset = root / "data" / "prepared"
    recipe = {"version": bundle_version(root)}
    if (dataset / "datalist.json").is_file():
        manifest = _manifest()
        prepared = manifest["preparations"].get(str(dataset))
        if prepared == recipe or str(dataset) not in manifest["paths"]:
            print(f"\n[preparation] keeping the dataset prepared earlier in {dataset}")
            return
        was = f"version {prepared['version']}" if prepared else "an earlier demo"
        print(f"\n[preparation] the demo dataset in {dataset} was prepared by {was}, not by version "
              f"{recipe['version']}: preparing it anew")
        _remove(dataset)
    for path in (root / "data" / "raw", dataset):
        claim(path)
    print(f"\n[preparation] demo path: writing the demo cohort into {root / 'data' / 'raw'} if missing, then {dataset}")
    run(bundle_run("preparation", _config_argument(["prepare.json"], root)))
    manifest = _manifest()
    manifest["preparations"][str(dataset)] = recipe
    # the demo's trainings of this bundle learnt from the dataset that was just replaced: train them anew
    manifest["trainings"] = {k: v for k, v in manifest["trainings"].items() if not Path(k).is_relative_to(root)}
    _save(manifest)


def training_recipe(root: Path, configs: list[str], overrides: list[str]) -> dict:
    """What a demo training depends on besides the data: the bundle's version, its config files and the demo's
    overrides."""
    return {"version": bundle_version(root), "configs": configs, "overrides": overrides}


def forget_stale_training(output_dir: Path, recipe: dict) -> None:
    """Remove the demo's own training in ``output_dir`` when it was trained with another recipe (or before recipes
    were recorded), so that it is trained anew instead of resumed into weights of another network; then record
    ``recipe`` for it."""
    trained = _manifest()["trainings"].get(str(output_dir))
    if (output_dir / "checkpoints" / "checkpoint_latest.pt").is_file() and trained != recipe:
        was = f"version {trained['version']} with {trained.get('configs')} {trained['overrides']}" if trained else \
            "an earlier demo"
        print(f"\n[training] the demo run in {output_dir} was trained by {was}, not by version {recipe['version']} "
              f"with {recipe['configs']} {recipe['overrides']}: training it anew (its own checkpoints, samples, losses "
              "and MLflow store are removed)")
        for name in TRAINING_OUTPUTS:
            _remove(output_dir / name)
    manifest = _manifest()
    manifest["trainings"][str(output_dir)] = recipe
    _save(manifest)


def config_values(root: Path, files: list[str], *keys: str) -> list:
    """The values of ``keys`` in the bundle's merged config ``files`` (paths resolved for ``root``)."""
    parser = read_configs(root, *files)
    return [parser.get_parsed_content(key) for key in keys]


def variants(root: Path) -> list[str]:
    """The training variants of a bundle: "" (train.json) and each ``<v>`` of an overlay ``train_<v>.json``."""
    overlays = sorted(path.stem.removeprefix("train_") for path in (root / "configs").glob("train_*.json"))
    return ["", *overlays]


def _files(step: str, variant: str) -> list[str]:
    return [f"{step}.json"] + ([f"{step}_{variant}.json"] if variant else [])


def _config_argument(files: list[str], root: Path) -> str:
    paths = [str(root / "configs" / f) for f in files]
    return paths[0] if len(paths) == 1 else json.dumps(paths)


def step_train(root: Path, variant: str, epochs: int | None) -> None:
    files = _files("train", variant)
    (output_dir,) = config_values(root, files, "output_dir")
    output_dir = Path(output_dir)
    checkpoint = output_dir / "checkpoints" / "checkpoint_latest.pt"
    if not claim(output_dir):
        sys.exit(f"error: {output_dir}: holds a training this demo did not start -> move it away, or run the "
                 "bundle's commands yourself with another --output_dir")
    forget_stale_training(output_dir, training_recipe(root, files, []))  # more epochs: resumed, not stale
    extra = [] if epochs is None else ["--train#trainer#max_epochs", str(epochs)]
    if checkpoint.is_file():
        print(f"\n[training] resuming the demo run in {output_dir} (a finished run trains nothing more)")
        extra += ["--resume", "true"]
    else:
        print(f"\n[training] new demo run in {output_dir}")
    run(bundle_run("training", _config_argument(files, root), *extra))


def step_export(root: Path, variant: str) -> None:
    files = _files("export", variant)
    name, models_dir, source = config_values(root, files, "name", "models_dir", "ckpt_path")
    models = Path(models_dir)
    targets = [models / f"{name}{suffix}" for suffix in (".pt", ".json", ".ts", ".onnx")] + [models / f"{name}_export.json"]
    existed = targets[0].exists()
    owned = [claim(path) for path in targets]
    if not all(owned):
        sys.exit(f"error: {targets[0]}: holds a model this demo did not export -> move it away to run the demo")
    claim(root / "large_files.yml")  # rewritten by every export, listing the files of models/
    what = "replacing the demo's own earlier export" if existed else "new export"
    print(f"\n[export] {source} -> {targets[0]} ({what})")
    run(bundle_run("export", _config_argument(files, root), "--overwrite", "true"))


def step_output(root: Path, run_id: str, config: str, folder: Path) -> None:
    claim(folder)
    what = "replacing its own earlier output" if folder.exists() else "new output"
    print(f"\n[{run_id}] {folder} ({what})")
    run(bundle_run(run_id, _config_argument([config], root)))


def demo_bundle(root: Path, epochs: int | None) -> None:
    step_prepare(root)
    for variant in variants(root):
        step_train(root, variant, epochs)
        step_export(root, variant)
    step_output(root, "inference", "inference.json", root / "outputs" / "inference")
    step_output(root, "evaluation", "evaluate.json", root / "outputs" / "evaluation")


def clean() -> None:
    """Remove what the demo created (and the lock files beside it), nothing else; folders it created on the way
    are removed only when they are empty."""
    manifest = _manifest()
    for path in sorted((Path(p) for p in manifest["paths"]), key=lambda p: len(p.parts), reverse=True):
        _remove(path)
        (path.parent / f".{path.name}.lock").unlink(missing_ok=True)
        print(f"removed {path}")
    for folder in sorted((Path(p) for p in manifest["containers"]), key=lambda p: len(p.parts), reverse=True):
        (folder.parent / f".{folder.name}.lock").unlink(missing_ok=True)
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            print(f"removed {folder}/")
        elif folder.is_dir():
            print(f"kept {folder}/ (it holds files the demo did not write)")
    MANIFEST.unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundles", nargs="+", choices=sorted(BUNDLES), default=sorted(BUNDLES))
    parser.add_argument("--epochs", type=int, default=None, help="override each demo config's epoch count")
    parser.add_argument("--list", action="store_true", help="print the bundles and their training variants, and stop")
    parser.add_argument("--clean", action="store_true", help="remove what earlier demo runs created, and stop")
    args = parser.parse_args()
    if args.list:
        for name in args.bundles:
            print(f"{name}: {BUNDLES[name]} (trainings: {', '.join(v or 'train' for v in variants(BUNDLES[name]))})")
        return
    if args.clean:
        clean()
        return
    summary = []
    for name in args.bundles:
        start = time.time()
        demo_bundle(BUNDLES[name], args.epochs)
        summary.append((name, time.time() - start))
    print("\nDemo finished. Results:")
    for name, seconds in summary:
        root = BUNDLES[name]
        print(f"  {name:13s} {seconds / 60:5.1f} min")
        for folder in (root / "outputs", root / "outputs" / "inference", root / "outputs" / "evaluation", root / "models"):
            if folder.exists():
                print(f"      {folder.relative_to(REPO)}/ ({len(list(folder.iterdir()))} entries)")


if __name__ == "__main__":
    main()
