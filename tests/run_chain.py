"""Run a bundle's whole chain at toy size, in one process: demo cohort -> preparation -> training -> export ->
inference -> evaluation, each step through ``monai.bundle.run`` with the bundle's own configs and the settings of its
``configs/toy.json``; prints one JSON line with the files each step left in its folder.

    python tests/run_chain.py BUNDLE_DIR WORK_DIR

Imports nothing of the repository but the bundle folder itself, so it runs in an environment that holds only the core
wheel and the packages the bundle's metadata names (the model zoo user's path); the tests run it that way and in the
development environment.
"""

import json
import sys
from pathlib import Path

from monai.bundle import run

from gan_core.bundle import activate


def main(bundle: Path, work: Path) -> dict:
    toy = json.loads((bundle / "configs" / "toy.json").read_text())
    activate(bundle)
    from scripts.demo_cohort import write_demo_cohort

    raw = write_demo_cohort(work / "raw", **toy["demo_cohort"])
    folders = {"dataset_dir": str(work / "prepared"), "output_dir": str(work / "outputs")}
    configs = bundle / "configs"
    run("preparation", config_file=str(configs / "prepare.json"), raw_dir=str(raw), dataset_dir=folders["dataset_dir"],
        **toy["preparation"])
    run("training", config_file=str(configs / "train.json"), **folders, **toy["training"])
    run("export", config_file=str(configs / "export.json"), output_dir=folders["output_dir"], **toy["export"])
    run("inference", config_file=str(configs / "inference.json"), **folders, **toy["inference"])
    run("evaluation", config_file=str(configs / "evaluate.json"), **folders, **toy["evaluation"])
    listing = {name: sorted(p.name for p in path.iterdir()) for name, path in
               {"models": bundle / "models", "inference": work / "outputs" / "inference",
                "evaluation": work / "outputs" / "evaluation"}.items()}
    return {"bundle": str(bundle), "files": listing}


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve())))
