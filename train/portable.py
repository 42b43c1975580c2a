"""Save a model folder that older readers load too, not only transformers 5.

A merged or fully fine-tuned version is read by more than this app: serving stacks (vLLM, TGI,
llama.cpp's converters) and older transformers read these files, and some of them fail or,
worse, silently load something else. transformers 5 writes (checked against 4.37, the first
release with both LLaVA and SigLIP):

- config.json keeps RoPE's base only inside `rope_parameters`: older readers fall back to
  10000 instead of HumanVLM's 500000 (docs/humanvlm.md), and it names the dtype `dtype`, not
  `torch_dtype`. Both spellings are written.
- the SigLIP tower's weights as `vision_tower.encoder...`; the LLaVA layout every other reader
  (and HumanVLM's own checkpoint) uses is `vision_tower.vision_model.encoder...`: older readers
  would start the vision tower from random weights, with only a warning. Renamed shard by shard.
- tokenizer_config.json names `TokenizersBackend`, a class only transformers 5 has, and keeps
  `is_local` / `local_files_only` from the load: a plain `PreTrainedTokenizerFast` it is. The
  chat template goes inside it as well (older readers ignore chat_template.jinja).
- tokenizer.json merges as pairs, which tokenizers before 0.20 cannot read: as "a b" strings.
- the image preprocessing only inside processor_config.json, nested: in preprocessor_config.json
  instead. processor_config.json keeps `patch_size` and the select strategy for the versions
  whose LlavaProcessor takes them; with older ones, load the tokenizer and the image processor
  (AutoTokenizer, AutoImageProcessor): 4.37's LlavaProcessor is only the two side by side.

transformers 5 reads every one of these back unchanged (tests/test_humanvlm_training.py).
"""

from __future__ import annotations

import json
from pathlib import Path

LEFTOVERS = ("is_local", "local_files_only", "backend", "_commit_hash", "name_or_path")
VISION_PREFIX, VISION_MODEL = "vision_tower.", "vision_tower.vision_model."


def make_portable(folder: str | Path) -> None:
    folder = Path(folder)
    _config(folder / "config.json")
    _weights(folder)
    _tokenizer_config(folder)
    _tokenizer_json(folder / "tokenizer.json")
    _preprocessor(folder)


def _edit_json(path: Path, edit) -> None:
    if path.is_file():
        data = json.loads(path.read_text())
        edit(data)
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _config(path: Path) -> None:
    def edit(config: dict) -> None:
        for sub in (config, *(config.get(k) for k in ("text_config", "vision_config") if isinstance(config.get(k), dict))):
            if "dtype" in sub and "torch_dtype" not in sub:
                sub["torch_dtype"] = sub["dtype"]
            rope = sub.get("rope_parameters")
            if isinstance(rope, dict) and "rope_theta" in rope:
                sub["rope_theta"] = rope["rope_theta"]
                if rope.get("rope_type", "default") != "default":  # Llama-3.1-style scaling, older spelling
                    sub["rope_scaling"] = {k: v for k, v in rope.items() if k != "rope_theta"}

    _edit_json(path, edit)


def _weights(folder: Path) -> None:
    """`vision_tower.X` -> `vision_tower.vision_model.X`, one shard in memory at a time."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    for shard in sorted(folder.glob("*.safetensors")):
        with safe_open(str(shard), "pt") as fh:
            keys, metadata = list(fh.keys()), fh.metadata()
            if not any(_renamed(k) != k for k in keys):
                continue
            tensors = {_renamed(k): fh.get_tensor(k) for k in keys}
        save_file(tensors, str(shard), metadata=metadata or {"format": "pt"})
        del tensors
    _edit_json(folder / "model.safetensors.index.json",
               lambda index: index.update(weight_map={_renamed(k): v for k, v in index["weight_map"].items()}))


def _renamed(key: str) -> str:
    if key.startswith(VISION_PREFIX) and not key.startswith(VISION_MODEL):
        return VISION_MODEL + key[len(VISION_PREFIX):]
    return key


def _tokenizer_config(folder: Path) -> None:
    template = folder / "chat_template.jinja"

    def edit(config: dict) -> None:
        if config.get("tokenizer_class") in (None, "TokenizersBackend"):
            config["tokenizer_class"] = "PreTrainedTokenizerFast"
        for key in LEFTOVERS:
            config.pop(key, None)
        if template.is_file() and not config.get("chat_template"):
            config["chat_template"] = template.read_text()

    _edit_json(folder / "tokenizer_config.json", edit)


def _tokenizer_json(path: Path) -> None:
    def edit(data: dict) -> None:
        merges = (data.get("model") or {}).get("merges")
        if merges and isinstance(merges[0], list) and not any(" " in part for pair in merges for part in pair):
            data["model"]["merges"] = [" ".join(pair) for pair in merges]

    if path.is_file():  # written compact: it is large (Llama-3: 9 MB)
        data = json.loads(path.read_text())
        edit(data)
        path.write_text(json.dumps(data, ensure_ascii=False))


def _preprocessor(folder: Path) -> None:
    """The image processor in preprocessor_config.json, where every version looks for it; out of
    processor_config.json, whose keys transformers 4.x passes to the processor as arguments (a
    nested `image_processor` there is a TypeError)."""
    processor = folder / "processor_config.json"
    if not processor.is_file():
        return
    config = json.loads(processor.read_text())
    image = config.pop("image_processor", None)
    if image:
        (folder / "preprocessor_config.json").write_text(json.dumps(image, indent=2, sort_keys=True) + "\n")
        processor.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
