"""`make demo`: prepare, train, export, infer and evaluate every bundle on its built-in demo cohort.

Runs the commands the README documents, one bundle after another, on the demo path: each bundle's own default
folders (``<bundle>/data/raw``, ``<bundle>/data/prepared``, ``<bundle>/outputs``, ``<bundle>/models``). Run twice, it
says for every step what it does with what is already there:

- preparation: a demo dataset this tool prepared is kept, unless another version of the bundle prepared it: then it
  is prepared anew (a dataset the demo did not write is used as it is, never replaced);
- training: a demo run this tool started is resumed (a finished one trains nothing more), unless it was trained by
  another version of the bundle, with other demo settings or on a dataset since prepared anew: then the demo's own
  run is trained anew;
- export: models/<name>.pt is replaced only if this tool wrote it; a model of yours there stops the demo;
- inference and evaluation: replace their own earlier outputs.

Everything the demo creates is listed in ``.demo_outputs.json`` at the repository root; ``make clean-outputs``
(``python tools/demo.py --clean``) removes exactly those paths, nothing else.

    python tools/demo.py [--bundles radiogenomic radiogan ctstyle] [--epochs N] [--clean]
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

from bundles import bundle_names
from bundles.runs import TRAINING_OUTPUTS

REPO = Path(__file__).resolve().parents[1]
BUNDLES = bundle_names()
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


def bundle_run(run_id: str, config: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "monai.bundle", "run", run_id, "--config_file", str(config), *overrides]


def bundle_version(root: Path) -> str:
    return json.loads((root / "configs" / "metadata.json").read_text())["version"]


def step_prepare(root: Path) -> None:
    configs = root / "configs"
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
    run(bundle_run("preparation", configs / "prepare.json"))
    manifest = _manifest()
    manifest["preparations"][str(dataset)] = recipe
    # the demo's trainings of this bundle learnt from the dataset that was just replaced: train them anew
    manifest["trainings"] = {k: v for k, v in manifest["trainings"].items() if not Path(k).is_relative_to(root)}
    _save(manifest)


def training_recipe(root: Path, overrides: list[str]) -> dict:
    """What a demo training depends on besides the data: the bundle's version and the demo's overrides."""
    return {"version": bundle_version(root), "overrides": overrides}


def forget_stale_training(output_dir: Path, recipe: dict) -> None:
    """Remove the demo's own training in ``output_dir`` when it was trained with another recipe (or before recipes
    were recorded), so that it is trained anew instead of resumed into weights of another network; then record
    ``recipe`` for it."""
    trained = _manifest()["trainings"].get(str(output_dir))
    if (output_dir / "checkpoints" / "checkpoint_latest.pt").is_file() and trained != recipe:
        was = f"version {trained['version']} with {trained['overrides']}" if trained else "an earlier demo"
        print(f"\n[training] the demo run in {output_dir} was trained by {was}, not by version {recipe['version']} "
              f"with {recipe['overrides']}: training it anew (its own checkpoints, samples, losses and MLflow store "
              "are removed)")
        for name in TRAINING_OUTPUTS:
            _remove(output_dir / name)
    manifest = _manifest()
    manifest["trainings"][str(output_dir)] = recipe
    _save(manifest)


def step_train(root: Path, output_dir: Path, epochs: int | None, *overrides: str) -> None:
    checkpoint = output_dir / "checkpoints" / "checkpoint_latest.pt"
    if not claim(output_dir):
        sys.exit(f"error: {output_dir}: holds a training this demo did not start -> move it away, or run the "
                 "bundle's commands yourself with another --output_dir")
    forget_stale_training(output_dir, training_recipe(root, list(overrides)))  # more epochs: resumed, not stale
    extra = [*overrides, "--output_dir", str(output_dir)]
    if epochs is not None:
        extra += ["--train#trainer#max_epochs", str(epochs)]
    if checkpoint.is_file():
        print(f"\n[training] resuming the demo run in {output_dir} (a finished run trains nothing more)")
        extra += ["--resume", "true"]
    else:
        print(f"\n[training] new demo run in {output_dir}")
    run(bundle_run("training", root / "configs" / "train.json", *extra))


def step_export(root: Path, checkpoint: Path, name: str) -> None:
    models = root / "models"
    targets = [models / f"{name}{suffix}" for suffix in (".pt", ".json", ".ts", ".onnx")] + [models / f"{name}_export.json"]
    existed = targets[0].exists()
    owned = [claim(path) for path in targets]
    if not all(owned):
        sys.exit(f"error: {models / (name + '.pt')}: holds a model this demo did not export -> move it away to run "
                 "the demo")
    what = "replacing the demo's own earlier export" if existed else "new export"
    print(f"\n[export] {checkpoint} -> {models / (name + '.pt')} ({what})")
    run([sys.executable, str(REPO / "tools" / "export.py"), "--bundle", str(root), "--ckpt", str(checkpoint),
         "--name", name, "--overwrite"])


def step_output(root: Path, run_id: str, config: str, folder: Path) -> None:
    claim(folder)
    what = "replacing its own earlier output" if folder.exists() else "new output"
    print(f"\n[{run_id}] {folder} ({what})")
    run(bundle_run(run_id, root / "configs" / config))


def demo_bundle(name: str, epochs: int | None) -> None:
    root = REPO / f"{name}_bundle"
    outputs = root / "outputs"
    step_prepare(root)
    step_train(root, outputs, epochs)
    step_export(root, outputs / "checkpoints" / "checkpoint_latest.pt", "model")
    if name == "radiogenomic":  # the paper's MC-GAN baseline (its own objective), for Table 1 and Fig. 4
        baseline = outputs / "baseline"
        step_train(root, baseline, epochs, "--network#model_type", "baseline", "--objective", "paper")
        step_export(root, baseline / "checkpoints" / "checkpoint_latest.pt", "baseline_model")
    step_output(root, "inference", "inference.json", outputs / "inference")
    step_output(root, "evaluation", "evaluate.json", outputs / "evaluation")


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
    parser.add_argument("--bundles", nargs="+", choices=BUNDLES, default=list(BUNDLES))
    parser.add_argument("--epochs", type=int, default=None, help="override each demo config's epoch count")
    parser.add_argument("--clean", action="store_true", help="remove what earlier demo runs created, and stop")
    args = parser.parse_args()
    if args.clean:
        clean()
        return
    summary = []
    for name in args.bundles:
        start = time.time()
        demo_bundle(name, args.epochs)
        summary.append((name, time.time() - start))
    print("\nDemo finished. Results:")
    for name, seconds in summary:
        root = REPO / f"{name}_bundle"
        print(f"  {name:13s} {seconds / 60:5.1f} min")
        for folder in (root / "outputs", root / "outputs" / "inference", root / "outputs" / "evaluation", root / "models"):
            if folder.exists():
                print(f"      {folder.relative_to(REPO)}/ ({len(list(folder.iterdir()))} entries)")


if __name__ == "__main__":
    main()
