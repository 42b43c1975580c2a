"""Load HumanVLM (or any LLaVA-family checkpoint) for inference.

One path for every checkpoint: `AutoProcessor` + `AutoModelForImageTextToText`, from a hub id
or a local folder, with device/dtype/quantization chosen automatically or by flags (from the
checkpoint's size and the memory free for it, before loading: model/memory.py), an optional
LoRA adapter on top, and the prompt format picked from the tokenizer. The offline demo model
(`--model demo`) goes through exactly this code too.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

log = logging.getLogger(__name__)

HUMANVLM_ID = "OpenFace-CQUPT/Human_LLaVA"
DTYPES = ("auto", "float32", "bfloat16", "float16")
QUANTS = ("auto", "none", "4bit", "8bit")


class ModelLoadError(RuntimeError):
    user_facing = True


@dataclass
class LoadConfig:
    """How to load the model. Every field is also a command-line flag (see add_model_arguments)."""

    model: str = field(default="auto", metadata={"help": (
        "hub id or local folder of a LLaVA-family checkpoint; 'demo' for the offline demo model; "
        f"'auto' = {HUMANVLM_ID} when a GPU is present or its weights are on disk, else demo")})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda | cuda:N | mps"})
    dtype: str = field(default="auto", metadata={"help": (
        "auto (on a GPU the checkpoint's saved dtype, float16 for HumanVLM; on a CPU float32, or bfloat16 "
        "when float32 does not fit in RAM) | float32 | bfloat16 | float16")})
    quant: str = field(default="auto", metadata={"help": "auto (4bit when the GPU is short of memory) | none | 4bit | 8bit"})
    memory_budget: str | None = field(default=None, metadata={"help": (
        "memory the weights may use, e.g. 16GB (default: free GPU memory on a GPU, available RAM on a CPU)")})
    adapter: str | None = field(default=None, metadata={"help": "LoRA adapter folder applied on top of the base"})
    prompt_format: str = field(default="auto", metadata={"help": "auto (from the tokenizer) | llama3 | card"})
    cache_dir: str | None = field(default=None, metadata={"help": "where the demo model is built (default $HUMANVLM_CACHE or ~/.cache/humanvlm-studio)"})


@dataclass
class ModelInfo:
    name: str  # what the user asked for, resolved (hub id, folder, or "demo")
    version: str  # stable identifier of the weights (+ adapter) for provenance
    device: str
    dtype: str
    quant: str
    prompt_format: str
    is_demo: bool
    adapter: str | None = None
    note: str = ""  # why this model was chosen, shown as a banner when it is the demo
    decision: str = ""  # the precision chosen for the memory at hand, and why (model/memory.py)

    def describe(self) -> str:
        extra = f" + adapter {Path(self.adapter).name}" if self.adapter else ""
        decided = f"; {self.decision}" if self.decision else ""
        return (f"{self.name}{extra} on {self.device} ({self.dtype}, quant {self.quant}, "
                f"{self.prompt_format} prompts){decided}")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    for f in fields(LoadConfig):
        flag = "--" + f.name.replace("_", "-")
        parser.add_argument(flag, dest=f.name, default=f.default, help=f.metadata["help"])


def config_from_args(args: argparse.Namespace) -> LoadConfig:
    return LoadConfig(**{f.name: getattr(args, f.name) for f in fields(LoadConfig) if hasattr(args, f.name)})


def resolve_model(config: LoadConfig) -> tuple[str, str]:
    """Turn `auto`/`demo` into a loadable id or folder, with the reason for the choice."""
    from model.demo import ensure_demo_model

    if config.model == "demo":
        return str(ensure_demo_model(_cache(config))), "the demo model was asked for"
    if config.model != "auto":
        return config.model, ""
    import torch

    if torch.cuda.is_available():
        return HUMANVLM_ID, "a GPU is present"
    if _cached_on_disk(HUMANVLM_ID):
        return HUMANVLM_ID, "its weights are on disk"
    reason = (f"HumanVLM was not loaded: no GPU was found and {HUMANVLM_ID} is not on disk. "
              f"This is the untrained offline demo model (captions are gibberish). "
              f"Load HumanVLM with --model {HUMANVLM_ID} (a GPU with 6 GB or more).")
    return str(ensure_demo_model(_cache(config))), reason


def _cache(config: LoadConfig) -> Path | None:
    return Path(config.cache_dir) if config.cache_dir else None


def _cached_on_disk(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json")
    return isinstance(found, str) and os.path.exists(found)


def pick_device(requested: str) -> str:
    import torch

    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


def plan_memory(config: LoadConfig, model_id: str, device: str):
    """dtype and quantization for this checkpoint on this device, decided before loading.

    Raises ModelLoadError when it cannot fit in any precision allowed (a clear line, instead of
    a process killed for memory half way through loading)."""
    import torch

    from model import memory

    if config.dtype not in DTYPES:
        raise ModelLoadError(f"unknown dtype {config.dtype!r}; use {', '.join(DTYPES)}")
    if config.quant not in QUANTS:
        raise ModelLoadError(f"unknown quantization {config.quant!r}; use {', '.join(QUANTS)}")
    try:
        free = memory.free_memory(device, config.memory_budget)
    except ValueError as exc:
        raise ModelLoadError(f"--memory-budget: {exc}") from None
    size = memory.checkpoint_size(model_id)
    bf16_ok = not device.startswith("cuda") or (torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    try:
        return memory.plan(device, config.dtype, config.quant, size, free, bf16_ok)
    except memory.NotEnoughMemory as exc:
        raise ModelLoadError(f"{model_id}: {exc}") from None


def quantization_config(quant: str, dtype):
    if quant == "none":
        return None
    from transformers import BitsAndBytesConfig

    # The vision tower and projector are small and sensitive: keep them in full precision.
    # Patterns match module names from the start (as regexes), hence the leading `.*`.
    skip = [r".*vision_tower", r".*multi_modal_projector", "lm_head"]
    if quant == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                  bnb_4bit_compute_dtype=dtype, bnb_4bit_use_double_quant=True,
                                  llm_int8_skip_modules=skip)
    # 8-bit matmuls given fp32 inputs (on a CPU) cast them to fp16 and say so through `logging`
    # on every layer of every token: said once per process is enough.
    logging.getLogger("bitsandbytes.autograd._functions").addFilter(_ONCE)
    return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)


class _OncePerMessage(logging.Filter):
    """Lets each distinct message template through once."""

    def __init__(self):
        super().__init__()
        self.seen: set = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg in self.seen:
            return False
        self.seen.add(record.msg)
        return True


_ONCE = _OncePerMessage()


def load_model(config: LoadConfig | None = None):
    """Load the model and processor; returns a `model.generate.VLM` ready to caption.

    With `--model auto`, a HumanVLM that cannot be loaded (no hub, too little memory) falls
    back to the demo model, and the reason goes into the banner.
    """
    config = config or LoadConfig()
    model_id, note = resolve_model(config)
    if config.model != "auto" or model_id != HUMANVLM_ID:
        return _load(config, model_id, note)
    try:
        return _load(config, model_id, note)
    except Exception as exc:  # reported in the banner and the log, never swallowed silently
        log.warning("HumanVLM could not be loaded, serving the demo model: %s", exc)
        from model.demo import ensure_demo_model

        reason = (f"HumanVLM was not loaded: {exc}. This is the untrained offline demo model "
                  f"(captions are gibberish). Fix the cause and load HumanVLM with --model {HUMANVLM_ID}.")
        return _load(replace(config, model="demo"), str(ensure_demo_model(_cache(config))), reason)


def _load(config: LoadConfig, model_id: str, note: str):
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from model.generate import VLM
    from model.prompts import FORMATS, detect_format

    device = pick_device(config.device)
    is_demo = Path(model_id).name.startswith("demo-model-") or _is_demo_folder(model_id)
    plan = plan_memory(config, model_id, device)
    dtype, quant = getattr(torch, plan.dtype), plan.quant
    if plan.reason and not is_demo:
        _report_plan(config, model_id, device, plan)
    try:
        local = Path(model_id).is_dir()  # a folder on disk: never ask the hub anything
        processor = AutoProcessor.from_pretrained(model_id, local_files_only=local)
        model = AutoModelForImageTextToText.from_pretrained(
            model_id, dtype=dtype, quantization_config=quantization_config(quant, dtype), local_files_only=local,
            device_map={"": device} if quant != "none" else None)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"could not load {model_id}: {exc}") from exc
    if quant == "none":
        model.to(device)
    if config.adapter:
        model = _apply_adapter(model, config.adapter)
    model.eval()
    _align_processor(processor, model.config)
    fmt = detect_format(processor.tokenizer) if config.prompt_format == "auto" else FORMATS.get(config.prompt_format)
    if fmt is None:
        raise ModelLoadError(f"unknown prompt format {config.prompt_format!r}; use auto, llama3 or card")
    info = ModelInfo(
        name="demo" if config.model in ("demo", "auto") and is_demo else model_id,
        version=model_version(model_id, config.adapter),
        device=device, dtype=str(dtype).removeprefix("torch."), quant=quant,
        prompt_format=fmt.name, is_demo=is_demo, adapter=config.adapter, note=note,
        decision="" if is_demo else plan.reason)
    log.info("loaded %s", info.describe())
    return VLM(model=model, processor=processor, prompt_format=fmt, info=info)


def _report_plan(config: LoadConfig, model_id: str, device: str, plan) -> None:
    """Said out loud (stderr) when `auto` departed from the usual precision to make it fit."""
    departed = (config.quant == "auto" and plan.quant != "none") or (
        config.dtype == "auto" and device == "cpu" and plan.dtype != "float32")
    log.log(logging.WARNING if departed else logging.INFO, "%s: %s", model_id, plan.reason)


def _is_demo_folder(model_id: str) -> bool:
    return (Path(model_id) / "demo_spec.json").exists()


def _apply_adapter(model, adapter_dir: str):
    from peft import PeftModel

    if not (Path(adapter_dir) / "adapter_config.json").exists():
        raise ModelLoadError(f"{adapter_dir} is not a LoRA adapter folder (no adapter_config.json)")
    return PeftModel.from_pretrained(model, adapter_dir)


def _align_processor(processor, config) -> None:
    """Make the processor's image-token arithmetic match the model config.

    Current transformers expands `<image>` to patch_size-derived counts; a mismatch with the
    model's `image_seq_length` fails at generation time with an image-token count error.
    """
    vision = config.vision_config
    processor.patch_size = getattr(processor, "patch_size", None) or vision.patch_size
    processor.vision_feature_select_strategy = config.vision_feature_select_strategy
    if getattr(processor, "num_additional_image_tokens", None) is None:
        # CLIP towers carry a CLS token; SigLIP towers do not.
        processor.num_additional_image_tokens = 0 if "siglip" in vision.model_type else 1
    tokenizer = processor.tokenizer
    tokenizer.padding_side = "left"  # batched generation in a decoder-only model
    if tokenizer.pad_token is None:
        tokenizer.pad_token = "<pad>" if "<pad>" in tokenizer.get_vocab() else tokenizer.eos_token


def model_version(model_id: str, adapter: str | None = None) -> str:
    """A short stable id of the weights: the hub commit, a trained version's id, or a content hash."""
    base = _folder_version(Path(model_id)) if Path(model_id).is_dir() else _hub_version(model_id)
    if adapter:
        base += "+" + (_folder_version(Path(adapter)))
    return base


def _folder_version(folder: Path) -> str:
    meta = folder / "studio_version.json"  # written by train/ next to every trained version
    if meta.exists():
        return json.loads(meta.read_text())["version"]
    if (folder / "demo_spec.json").exists():
        return "demo-" + json.loads((folder / "demo_spec.json").read_text())["version"]
    digest = hashlib.sha256()
    for name in ("config.json", "adapter_config.json", "model.safetensors.index.json"):
        if (folder / name).exists():
            digest.update((folder / name).read_bytes())
    for path in sorted(folder.glob("*.safetensors")):
        digest.update(f"{path.name}:{path.stat().st_size}".encode())
    return f"{folder.name}-{digest.hexdigest()[:10]}"


def _hub_version(model_id: str) -> str:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(model_id, "config.json")
    if isinstance(found, str):  # .../snapshots/<commit>/config.json
        return f"{model_id}@{Path(found).parent.name[:10]}"
    return model_id
