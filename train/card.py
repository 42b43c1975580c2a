"""A trained version as a Hugging Face model repository: its card and its portable config.

`write_model_card` writes OUT/README.md with huggingface_hub's `ModelCard`: front matter
(`base_model` when the base is a Hub id, `library_name` peft or transformers, `datasets`,
`license`, `tags`, `pipeline_tag: image-text-to-text`) and a body with the training data, the
hyper-parameters, the held-out scores before and after, and how to load it with plain
transformers + peft. `portable_adapter_config` makes `adapter_config.json` name the base by its
Hub id (or a clear marker for the offline demo model), never by a local path.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

DEMO_MARKER = "humanvlm-studio/offline-demo-model"  # not on the Hub: `python app.py make-demo-model DIR`
HUMANCAPTION_DATASET = "OpenFace-CQUPT/HumanCaption-HQ-311K"
TAGS = ["humanvlm", "llava", "image-captioning", "human-centric", "humanvlm-studio"]
METRICS = ("bleu4", "chrf", "rouge_l", "cider", "token_f1", "edit_distance")


def base_reference(base: str, out: Path) -> str:
    """How the version names its base in files that travel: a Hub id as it is, the demo model as
    'demo', a local folder relative to the version folder (never an absolute path)."""
    if base == "demo" or not Path(base).is_dir():
        return base
    return os.path.relpath(Path(base).resolve(), out.resolve())


def hub_base(base: str) -> str | None:
    """The base's Hub id, or None (the demo model, a local folder)."""
    return None if base == "demo" or Path(base).is_dir() or base.count("/") != 1 else base


def portable_adapter_config(folder: Path, base: str) -> None:
    """Point adapter_config.json's `base_model_name_or_path` at the Hub id (or the demo marker)."""
    path = folder / "adapter_config.json"
    if not path.is_file():
        return
    config = json.loads(path.read_text())
    config["base_model_name_or_path"] = hub_base(base) or (DEMO_MARKER if base == "demo" else Path(base).name)
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _license(base: str, is_demo: bool) -> str:
    if is_demo:
        return "apache-2.0"  # random weights built by this project
    return "llama3" if "human_llava" in base.lower() else "other"


def write_model_card(out: Path, meta: dict, config: dict, evaluation: dict | None = None,
                     datasets: list[str] | None = None, repo_id: str | None = None) -> Path:
    """OUT/README.md for a version (`meta`: studio_version.json, `config`: training_config.json;
    `evaluation`: {"before": run, "after": run}; `repo_id`: where it is pushed, for the snippet)."""
    from huggingface_hub import ModelCard, ModelCardData

    base, adapter = meta["base"], not (meta["merged"] or meta["method"] == "full")
    data = ModelCardData(
        base_model=hub_base(base), library_name="peft" if adapter else "transformers",
        datasets=datasets or None, license=_license(base, meta["base_is_demo"]), language=["en"],
        pipeline_tag="image-text-to-text", tags=TAGS + (["lora", meta["method"]] if adapter else [meta["method"]]),
        model_name=meta["version"],
    )
    body = _body(meta, config, evaluation or {}, adapter, repo_id or "THIS_REPO_OR_FOLDER")
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")
    path = out / "README.md"
    card.save(path)
    return path


def _body(meta: dict, config: dict, evaluation: dict, adapter: bool, repo: str) -> str:
    base = meta["base"]
    shown_base = hub_base(base) or ("the offline demo model (`python app.py make-demo-model DIR`, then its folder)"
                                    if base == "demo" else f"the local model `{Path(base).name}`")
    data = meta.get("data", {})
    lines = [
        f"# {meta['version']}", "",
        f"HumanVLM Studio fine-tune ({meta['method']}{', merged' if meta['merged'] else ''}) of {shown_base} on "
        "captions of photos of people corrected by reviewers (HumanVLM's stage two, re-run on the corrections).", "",
        "## Training data", "",
        f"- Export `{Path(str(data.get('export', '?'))).name}` ({data.get('format', '?')}, sha256 "
        f"`{str(data.get('sha256', '?'))[:16]}...`): {data.get('train_items', '?')} train items, "
        f"{data.get('heldout_items', '?')} held out (test) by image hash.",
        "- Items are reviewer-approved captions; the exact item ids are in `training/data_manifest.json`.", "",
        "## Hyper-parameters", "", "| option | value |", "| --- | --- |",
    ]
    for key in ("method", "epochs", "max_steps", "lr", "batch_size", "grad_accum", "warmup_ratio", "lora_r",
                "lora_alpha", "lora_dropout", "max_length", "seed", "defaults", "world_size"):
        if config.get(key) is not None:
            lines.append(f"| {key} | {config[key]} |")
    metrics = meta.get("metrics", {})
    heldout = metrics.get("final_heldout_loss")
    lines += ["", f"Trained {metrics.get('steps', '?')} steps, final loss {metrics.get('final_loss', '?')}"
              + (f" (held-out loss {heldout})" if heldout is not None else "") + ", "
              f"{metrics.get('runtime_s', '?')} s. Training state (checkpoints, logs, status) is under `training/`."]
    lines += ["", "## Held-out scores", ""] + _scores(evaluation)
    lines += ["", "## How to load it", "", "```python"] + _snippet(base, repo, adapter) + ["```", "",
              "Prompt in the Llama-3 chat format HumanVLM was trained with: "
              "`<|start_header_id|>user<|end_header_id|>\\n\\n<image>\\n{question}<|eot_id|>"
              "<|start_header_id|>assistant<|end_header_id|>\\n\\n`; stop on `<|eot_id|>`. "
              f"Or serve it in HumanVLM Studio, downloaded first (`hf download {repo} --local-dir DIR`): "
              "`python app.py --model " + ("BASE --adapter DIR`." if adapter else "DIR`."), ""]
    return "\n".join(lines)


def _scores(evaluation: dict) -> list[str]:
    before, after = evaluation.get("before"), evaluation.get("after")
    if not after:
        return ["Not evaluated (run `train --evaluate`, or `python app.py eval`)."]
    rows = ["| metric | base | this version |", "| --- | --- | --- |"]
    for name in METRICS:
        if name in after["metrics"]:
            old = before["metrics"].get(name, "-") if before else "-"
            rows.append(f"| {name} | {old} | {after['metrics'][name]} |")
    rows.append(f"\n{after['metrics'].get('n', '?')} held-out photos, greedy decoding, "
                f"max_new_tokens {after.get('max_new_tokens', '?')}.")
    return rows


def _snippet(base: str, repo: str, adapter: bool) -> list[str]:
    source = hub_base(base) or "BASE_MODEL_FOLDER"
    lines = ["from transformers import AutoModelForImageTextToText, AutoProcessor"]
    if adapter:
        lines += ["from peft import PeftModel",
                  f"model = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(\"{source}\"), \"{repo}\")"]
    else:
        lines += [f"model = AutoModelForImageTextToText.from_pretrained(\"{repo}\")"]
    return lines + [f"processor = AutoProcessor.from_pretrained(\"{repo}\")"]
