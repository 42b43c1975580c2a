"""`push VERSION --repo OWNER/NAME`: a trained version folder as a Hugging Face model repository.

The folder already is one (train.output, train.card): the card is rewritten to name the
repository (and the dataset, when given) in its loading snippet, the top-level files are checked
for absolute paths, and the folder is uploaded without its machine-local training state
(`training/`: checkpoints, optimizer, logs), unless asked.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from train.errors import TrainError

LOCAL_STATE = ("training/*",)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "push", help="upload a trained version to the Hugging Face Hub as a model repository",
        description="Upload a version folder written by `train` (model card, adapter or model, processor, "
                    "TensorBoard runs) as a model repository. Token: $HF_TOKEN or `hf auth login`.")
    p.add_argument("version", metavar="VERSION", help="the version folder, or a version id or name "
                   "(given in the Models tab) under --models-dir")
    p.add_argument("--repo", required=True, metavar="OWNER/NAME", help="the model repository (created if missing)")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--dataset", action="append", default=[], metavar="OWNER/NAME",
                   help="Hub dataset the version was trained on (e.g. where `export --push-to` put it); repeatable")
    p.add_argument("--with-training-state", action="store_true",
                   help="upload training/ too (checkpoints, optimizer, logs: large, and holds local paths)")
    p.add_argument("--models-dir", metavar="DIR", help="where versions are looked up by id (default "
                   "$HUMANVLM_MODELS_DIR, else DATA_DIR/models)")
    p.set_defaults(func=run_push)


def find_version(name: str, models_dir: str | None = None):
    """The ModelVersion for a folder path, a version id or a version's name."""
    from train.versions import VERSION_FILE, list_versions, read_version

    if Path(name).is_dir():
        version = read_version(name)
        if version is None:
            raise TrainError(f"{name} is not a trained version (no {VERSION_FILE})")
        return version
    root = Path(models_dir or os.environ.get("HUMANVLM_MODELS_DIR") or _data_dir() / "models")
    for version in list_versions(root):
        if name in (version.version, version.name):
            return version
    raise TrainError(f"no version folder, version id or name {name!r} (looked in {root})")


def _data_dir() -> Path:
    from annotate.db import resolve_data_dir

    return Path(resolve_data_dir(None))


def absolute_paths(folder: Path) -> list[str]:
    """Top-level text files that mention an absolute path of this machine (the folder's or $HOME)."""
    needles = {str(folder.resolve()), str(Path.home())} - {"/"}
    found = []
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix in (".json", ".md", ".txt", ".jinja", ".yaml"):
            text = path.read_text(errors="replace")
            if any(needle in text for needle in needles):
                found.append(path.name)
    return found


def prepare(version, repo_id: str, datasets: list[str]) -> Path:
    """Rewrite the card for `repo_id` and check the folder; returns it, ready to upload."""
    from train.card import write_model_card

    folder = version.path
    meta = json.loads((folder / "studio_version.json").read_text())
    try:
        config = json.loads((folder / "training" / "training_config.json").read_text())
    except (OSError, ValueError):
        config = {}
    runs = {which: version.evaluation(which) for which in ("before", "after")}
    write_model_card(folder, meta, config, runs, datasets=datasets, repo_id=repo_id)
    leaks = absolute_paths(folder)
    if leaks:
        raise TrainError(f"{folder} is not ready to share: {', '.join(leaks)} hold absolute paths of this machine "
                         "(a version from an older release: train it again)")
    return folder


def run_push(args) -> int:
    from annotate.publish import check_repo_id, push_folder

    check_repo_id(args.repo)
    version = find_version(args.version, args.models_dir)
    folder = prepare(version, args.repo, args.dataset)
    ignore = () if args.with_training_state else LOCAL_STATE
    url = push_folder(folder, args.repo, "model", private=args.private, ignore=ignore,
                      message=f"HumanVLM Studio version {version.version}")
    print(f"pushed {version.version} to {url}", file=sys.stdout)
    return 0
