"""Managing trained versions (the Models tab): a human name, a merged copy, deletion.

- rename: the name is stored in the version's studio_version.json, written atomically (a
  temporary file renamed over it); the version id, which evaluations and provenance refer to,
  never changes.
- merge: a LoRA or QLoRA version folded into its base as a NEW version folder, by the same code
  as `train --merge` (train.merge.save_merged), with the same metadata (`merged: true`,
  `load: {"model": "."}`), so it lists, loads and serves like a merged training run. It is built
  under a hidden name and renamed into place once complete: a crash leaves no half version.
- delete: the folder is renamed to a hidden trash name first (one atomic rename: it is no longer
  listed), then removed; trash a crash left behind is removed by the next delete.

Folders whose name starts with "." are never listed (train.versions.list_versions).
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import threading
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from train.errors import TrainError
from train.versions import BASE_CHOICE, VERSION_FILE, ModelVersion, list_versions, read_version

log = logging.getLogger(__name__)

MAX_NAME = 40
NAME_RULE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]*")  # safe in a path, a label, Markdown and a URL
TRASH, BUILDING = ".trash-", ".merging-"
PROVENANCE = ("metrics.json", "training/training_config.json", "training/data_manifest.json", "training/eval.json")
# One rename, merge hand-over or delete at a time in this process, so two admins cannot take one name.
_lock = threading.Lock()


class VersionError(TrainError):
    """A version that cannot be renamed, merged or deleted as asked; nothing was changed."""


# ---- names -------------------------------------------------------------------------------------


def check_name(name: str | None, versions: list[ModelVersion], keep: ModelVersion | None = None) -> str | None:
    """The name cleaned (spaces collapsed), or None to clear it; refused when malformed or taken.
    A name may not be another version's name, folder name or id, nor "base" (version_by_name
    accepts all of those)."""
    name = " ".join((name or "").split())
    if not name:
        return None
    if len(name) > MAX_NAME:
        raise VersionError(f"a version name is at most {MAX_NAME} characters (this one has {len(name)})")
    if not NAME_RULE.fullmatch(name):
        raise VersionError("a version name uses only letters, digits, spaces, '.', '_' and '-', "
                           "and starts with a letter or a digit")
    if name.lower() == BASE_CHOICE or name.lower().startswith(BASE_CHOICE + ":"):
        raise VersionError(f"{name!r} is reserved for the base model; pick another name")
    for v in versions:
        if keep is not None and v.path == keep.path:
            continue
        if name.lower() in {v.path.name.lower(), v.version.lower(), (v.name or "").lower()}:
            raise VersionError(f"{name!r} already names version {v.version}; pick another name")
    return name


def rename_version(version: ModelVersion, name: str | None, root: str | Path) -> ModelVersion:
    """Give `version` a human name (empty: remove it); returns the version as it is now."""
    from train.progress import write_json_atomic

    with _lock:
        name = check_name(name, list_versions(root), keep=version)
        path = version.path / VERSION_FILE
        meta = json.loads(path.read_text())
        if name:
            meta["name"] = name
        else:
            meta.pop("name", None)
        write_json_atomic(path, meta)
    return read_version(version.path)


# ---- merge ---------------------------------------------------------------------------------------


def merge_version(version: ModelVersion, root: str | Path, template) -> ModelVersion:
    """Fold a LoRA/QLoRA version into its base as a new version folder under `root`.
    `template`: the serving LoadConfig (device, dtype, cache kept; always loaded unquantized)."""
    root = Path(root)
    if version.merged or version.method == "full" or not version.load.get("adapter"):
        kind = "a merged version" if version.merged else "a full fine-tune"
        raise VersionError(f"{version.version} is {kind}, already a whole model: only LoRA and QLoRA "
                           "versions can be merged")
    for other in list_versions(root):
        if other.merged_from == version.version:
            raise VersionError(f"{version.version} is merged already, as {other.path.name} ({other.version})")
    final = _free_folder(root, f"{version.path.name}-merged")
    building = root / f"{BUILDING}{final.name}-{secrets.token_hex(4)}"
    building.mkdir(parents=True)
    try:
        meta = _build_merged(version, building, final, template)
        with _lock:
            meta["name"] = _inherited_name(version, root)
            _write_meta(building, meta)
            final = _free_folder(root, final.name)
            os.rename(building, final)  # the version appears whole, or not at all
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)  # our own half-built folder; the error goes on
        raise
    log.info("merged %s into %s", version.version, final)
    return read_version(final)


def _build_merged(version: ModelVersion, building: Path, final: Path, template) -> dict:
    from model.loader import load_model
    from model.zerogpu import on_zerogpu
    from train import card
    from train.merge import ADAPTER_FILES, save_merged
    from train.output import version_id

    base = version.load["model"]
    adapter = building / "adapter"  # kept, as `train --merge` keeps it
    adapter.mkdir()
    for name in ADAPTER_FILES:
        if (version.path / name).is_file():
            shutil.copy2(version.path / name, adapter / name)
    for name in PROVENANCE:
        if (version.path / name).is_file():
            (building / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(version.path / name, building / name)
    # Merging needs 16-bit weights. On ZeroGPU no GPU exists outside a GPU call: merge on the CPU.
    config = replace(template, model=base, adapter=str(version.path), quant="none",
                     device="cpu" if on_zerogpu() else template.device)
    vlm = load_model(config)
    try:
        save_merged(building, base, vlm, vlm.model, adapter, template.cache_dir)
    finally:
        vlm.release()
    meta = {"version": version_id(final, version.version, "merged"), "base": card.base_reference(base, final),
            "base_version": version.base_version, "base_is_demo": version.base_is_demo, "method": version.method,
            "merged": True, "merged_from": version.version, "load": {"model": ".", "adapter": None},
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "data": version.data,
            "metrics": version.metrics}
    training = building / "training" / "training_config.json"
    card.write_model_card(building, meta, json.loads(training.read_text()) if training.is_file() else {})
    return meta


def _write_meta(folder: Path, meta: dict) -> None:
    from train.progress import write_json_atomic

    write_json_atomic(folder / VERSION_FILE, {k: v for k, v in meta.items() if v is not None})


def _inherited_name(version: ModelVersion, root: Path) -> str | None:
    """'<name>-merged' when the source has a name and that one is free; else no name."""
    if not version.name:
        return None
    try:
        return check_name(f"{version.name[:MAX_NAME - 7]}-merged", list_versions(root))
    except VersionError:
        return None


def _free_folder(root: Path, stem: str) -> Path:
    path, n = root / stem, 2
    while path.exists():
        path, n = root / f"{stem}-{n}", n + 1
    return path


# ---- delete --------------------------------------------------------------------------------------


def delete_version(version: ModelVersion, root: str | Path, serving=None, job=None) -> None:
    """Remove a version's folder. Refused while it serves the demo (`serving`: the slot's
    LoadConfig), while the active training job (`job`) writes it or trains from it, and while
    another version is built on it."""
    root = Path(root)
    reason = in_use(version, root, serving, job)
    if reason:
        raise VersionError(f"{version.version} cannot be deleted: {reason}")
    sweep_trash(root)
    trash = root / f"{TRASH}{version.path.name}-{secrets.token_hex(4)}"
    with _lock:
        os.rename(version.path, trash)  # atomic: from here on it is not listed
    shutil.rmtree(trash)
    log.info("deleted version %s (%s)", version.version, version.path)


def sweep_trash(root: Path) -> int:
    """Remove what earlier deletions left (a crash between the rename and the removal)."""
    left = [p for p in root.glob(f"{TRASH}*") if p.is_dir()] if root.is_dir() else []
    for path in left:
        log.warning("removing %s, left by an interrupted deletion", path)
        shutil.rmtree(path)
    return len(left)


def in_use(version: ModelVersion, root: Path, serving, job) -> str | None:
    """Why the version cannot go now (see delete_version), or None."""
    if serving is not None and any(_inside(p, version.path) for p in (serving.model, serving.adapter)):
        return "the demo is serving it right now; use another version in the demo first"
    if job is not None and _inside(job.out_dir, version.path):
        return f"training job {job.id} ({job.status}) is writing it; wait for it or cancel it first"
    if job is not None and _inside(job.options.get("base"), version.path):
        return f"training job {job.id} ({job.status}) trains from it; wait for it or cancel it first"
    for other in list_versions(root):
        if other.path != version.path and any(_inside(p, version.path) for p in other.load.values()):
            return f"version {other.version} is built on it; delete that one first"
    return None


def _inside(path: str | None, folder: Path) -> bool:
    """Whether `path` (a model id, a folder, None) is `folder` or lies within it."""
    if not path or not Path(path).exists():
        return False  # "demo", a hub id
    return Path(path).resolve().is_relative_to(folder.resolve())
