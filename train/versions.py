"""Trained versions: what `train` leaves in an output folder, and how to list and load them.

Every output folder holds `studio_version.json` (read by model.loader as the version id):

    {"version": "shapes-lora-3f2a9c1e", "base": "demo", "base_version": "demo-v2",
     "method": "lora", "merged": false, "load": {"model": "demo", "adapter": "."},
     "created_at": "...", "data": {...}, "metrics": {...},
     "name": "spring-fixes", "merged_from": "..."}   (both optional: train/manage.py)

The version id never changes; `name` is a human name an admin may give it (unique, validated).
Folders whose name starts with "." (a merge being built, a deletion under way) are never listed.

`load` paths are relative to the folder ("." is the folder itself), so the folder can move or be
pushed to the Hub; read_version resolves them (absolute paths of older versions still work).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from model.zerogpu import generation_seconds, gpu

VERSION_FILE = "studio_version.json"


@dataclass(frozen=True)
class ModelVersion:
    version: str
    path: Path
    base: str
    base_version: str
    method: str
    merged: bool
    created_at: str
    base_is_demo: bool
    load: dict  # {"model": ..., "adapter": ... or None}: the LoadConfig fields that serve it
    data: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    name: str | None = None  # a human name given in the Models tab
    merged_from: str | None = None  # the version id this merged version was folded from

    def load_config(self, template):
        """A model.loader.LoadConfig serving this version (device, dtype... kept from `template`)."""
        return replace(template, model=self.load["model"], adapter=self.load.get("adapter"))

    def evaluation(self, which: str = "after") -> dict | None:
        """Newest held-out scores of the base ("before") or of this version ("after"), if measured."""
        from train.evaluate import EVAL_FILE, load_runs

        wanted = self.version if which == "after" else self.base_version
        for run in reversed(load_runs(self.path / EVAL_FILE)):
            # An adapter's loaded version reads "<base version>+<adapter version>".
            version = run.get("version", "")
            if run.get("split") == "heldout" and (version == wanted or version.endswith("+" + wanted)):
                return run
        return None

    def label(self) -> str:
        named = f"{self.name} · " if self.name else ""
        return f"{named}{self.version} ({self.method} on {self.base}, {self.created_at[:16].replace('T', ' ')})"


def read_version(folder: str | Path) -> ModelVersion | None:
    path = Path(folder) / VERSION_FILE
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if "load" not in meta:  # not written by train (e.g. a hand-made file)
        return None
    from train.output import resolved_load

    return ModelVersion(
        version=meta["version"], path=Path(folder).resolve(), base=meta.get("base", "?"),
        base_version=meta.get("base_version", ""), method=meta.get("method", "?"), merged=bool(meta.get("merged")),
        created_at=meta.get("created_at", ""), base_is_demo=bool(meta.get("base_is_demo")), load=resolved_load(meta["load"], Path(folder).resolve()),
        data=meta.get("data", {}), metrics=meta.get("metrics", {}), name=meta.get("name") or None,
        merged_from=meta.get("merged_from"))


def list_versions(root: str | Path) -> list[ModelVersion]:
    """Every trained version under `root` (one folder level deep), newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [read_version(p) for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return sorted((v for v in found if v is not None), key=lambda v: v.created_at, reverse=True)


def is_demo_family(vlm) -> bool:
    """The demo model or a version trained from it (they share its small-model defaults)."""
    if vlm.info.is_demo:
        return True
    version = read_version(vlm.info.name) if Path(vlm.info.name).is_dir() else None
    return bool(version and version.base_is_demo)


# ---- choosing and comparing versions (the Models tab) -------------------------------------

BASE_CHOICE = "base"  # dropdown value that stands for the untrained base model


def version_choices(models_dir: str | Path, base: str) -> list[tuple[str, str]]:
    """(label, value) pairs: the base first, then every version, newest first."""
    return [(f"base: {base}", BASE_CHOICE)] + [(v.label(), str(v.path)) for v in list_versions(models_dir)]


def config_for(choice: str, template, base: str):
    """The LoadConfig serving a dropdown choice (device, dtype... kept from `template`)."""
    if choice == BASE_CHOICE:
        return replace(template, model=base, adapter=None)
    version = read_version(choice)
    if version is None:
        from train.errors import TrainError

        raise TrainError(f"{choice} is not a trained version (no {VERSION_FILE})")
    return version.load_config(template)


def compare_captions(slot, configs: list, image, prompt: str, settings=None) -> list[str]:
    """Caption one image with each config. The serving model is reused; others are loaded
    one at a time and released straight after, so at most one extra model is in memory."""
    return _compare(slot.get(), slot.config, configs, image, prompt, settings)


def _compare_seconds(serving, serving_config, configs, image, prompt, settings=None) -> int:
    tokens = settings.max_new_tokens if settings is not None else 400
    return generation_seconds(tokens * len(configs), loads=sum(c != serving_config for c in configs))


# On ZeroGPU the whole comparison is one GPU call: other versions load on the worker's GPU.
@gpu(duration=_compare_seconds)
def _compare(serving, serving_config, configs: list, image, prompt: str, settings=None) -> list[str]:
    from model.loader import load_model

    captions = []
    for config in configs:
        if config == serving_config:
            captions.append(serving.caption(image, prompt, settings))
            continue
        vlm = load_model(config)
        try:
            captions.append(vlm.caption(image, prompt, settings))
        finally:
            vlm.release()
    return captions
