"""HumanVLM at full size on a GPU, through the product's loader: bf16 vs 4-bit nf4.

    python -m tests.perf.bench_gpu [--shape humanvlm|small] [--tokens 128] [--out DIR] [--json]

No weights are downloaded: tests/humanvlm_checkpoint.py writes a checkpoint with HumanVLM's exact
configuration and tokens (docs/humanvlm.md) at its real sizes (SigLIP so400m at 384 px,
Llama-3-8B, 8.5 B parameters, float16 shards) with random weights, which change neither speed
nor memory. Each precision is loaded through `model.loader.load_model` and measured:

- load time; time to first token (the 728 image features and the prompt, then one token);
- decode tokens/s at batch 1 and batch 8 (exactly `--tokens` new tokens per sequence);
- the memory-bandwidth bound of batch-1 decoding (bytes of weights read per token / the GPU's
  measured copy bandwidth) and the fraction of it reached;
- one QLoRA optimizer step (nf4 base, the stage-two LoRA on both towers, gradient
  checkpointing, the product's collator, batch 4): steps/s;
- peak GPU memory of each.

`--shape small` runs the same path on a CPU in a minute, to check the script; the figures that
matter come from `--shape humanvlm` on a GPU. Nothing in the tests depends on this script.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

# The real sizes (docs/humanvlm.md); `small` keeps every key, shrinks the sizes.
SHAPES = {
    "humanvlm": {"text": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32),
                 "vision": dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16)},
    "small": {"text": dict(hidden_size=128, intermediate_size=384, num_hidden_layers=2, num_attention_heads=16),
              "vision": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2)},
}
PROMPT = "Describe this photo of a person in detail."


def _cuda():
    import torch

    return torch.cuda.is_available()


def _sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _reset_peak():
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_gib():
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None


def copy_bandwidth_gbs() -> float | None:
    """Device memory bandwidth, measured: a 2 GiB device-to-device copy reads and writes 4 GiB."""
    import torch

    if not torch.cuda.is_available():
        return None
    src = torch.empty(2**30, dtype=torch.float16, device="cuda")
    dst = torch.empty_like(src)
    dst.copy_(src)
    _sync()
    began = time.perf_counter()
    for _ in range(10):
        dst.copy_(src)
    _sync()
    seconds = (time.perf_counter() - began) / 10
    del src, dst
    torch.cuda.empty_cache()
    return round(2 * 2**31 / seconds / 1e9, 1)


def _images(count: int):
    from PIL import Image

    return [Image.new("RGB", (640, 480), (180 - 10 * i, 120, 90)) for i in range(count)]


def _generate(vlm, images, tokens: int) -> float:
    """Seconds for one `generate` producing exactly `tokens` new tokens per image."""
    import torch

    from model.generate import GenerationSettings

    inputs = vlm._inputs(images, [vlm.prompt_text([(PROMPT, None)])] * len(images))
    kwargs = vlm._gen_kwargs(GenerationSettings(max_new_tokens=tokens)) | {"eos_token_id": None,
                                                                           "min_new_tokens": tokens}
    with torch.inference_mode():
        _sync()
        began = time.perf_counter()
        vlm.model.generate(**inputs, **kwargs)
        _sync()
    return time.perf_counter() - began


def measure_inference(folder: Path, quant: str, tokens: int, bandwidth: float | None) -> dict:
    from model.loader import LoadConfig, load_model

    _reset_peak()
    began = time.perf_counter()
    vlm = load_model(LoadConfig(model=str(folder), dtype="bfloat16" if _cuda() else "auto", quant=quant))
    load_s = time.perf_counter() - began
    one = _images(1)
    _generate(vlm, one, 4)  # warm-up: kernels, allocator
    first = min(_generate(vlm, one, 1) for _ in range(3))  # prefill + one token
    batch1 = _generate(vlm, one, tokens)
    batch8 = _generate(vlm, _images(8), tokens)
    decode1 = (tokens - 1) / (batch1 - first)
    weights = vlm.model.get_memory_footprint()  # bytes read per decoded token, at least
    result = {"quant": quant, "dtype": vlm.info.dtype, "load_s": round(load_s, 1),
              "time_to_first_token_s": round(first, 3), "decode_tokens_per_s_batch1": round(decode1, 1),
              "tokens_per_s_batch8": round(8 * tokens / batch8, 1), "weights_gib": round(weights / 2**30, 2),
              "peak_gpu_gib": _peak_gib()}
    if bandwidth:
        bound = bandwidth * 1e9 / weights
        result |= {"bandwidth_bound_tokens_per_s": round(bound, 1), "fraction_of_bound": round(decode1 / bound, 2)}
    vlm.release()
    return result


def measure_qlora_step(folder: Path, batch: int = 4, steps: int = 3) -> dict:
    """Optimizer steps/s of the product's QLoRA setup (train.trainer.prepare_model) on one batch."""
    import torch
    from peft import get_peft_model
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    from model.loader import LoadConfig, load_model
    from train.data import prompt_and_completion
    from train.options import TrainOptions, resolve
    from train.trainer import prepare_model

    _reset_peak()
    options = TrainOptions(data="-", base=str(folder), out="-", method="qlora")
    vlm = load_model(LoadConfig(model=str(folder), dtype="bfloat16" if _cuda() else "auto", quant="4bit"))
    model, config = prepare_model(vlm.model, resolve(options, is_demo=False))
    model = get_peft_model(model, config)
    model.enable_input_require_grads()
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    collator = DataCollatorForVisionLanguageModeling(vlm.processor, completion_only_loss=True)
    caption = "A woman with short brown hair in an orange flight suit, smiling, in front of a flag. " * 4
    rows = [dict(zip(("prompt", "completion"), prompt_and_completion(vlm, PROMPT, caption))) | {"image": image}
            for image in _images(batch)]
    inputs = {k: v.to(vlm.model.device) if hasattr(v, "to") else v for k, v in collator(rows).items()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=5e-5)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if _cuda() else torch.autocast("cpu", enabled=False)
    times = []
    for _ in range(steps + 1):  # the first is a warm-up
        _sync()
        began = time.perf_counter()
        with autocast:
            loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        _sync()
        times.append(time.perf_counter() - began)
    result = {"method": "qlora", "batch": batch, "sequence_tokens": int(inputs["input_ids"].shape[1]),
              "trainable_parameters": sum(p.numel() for p in trainable),
              "steps_per_s": round(1 / (sum(times[1:]) / steps), 3), "peak_gpu_gib": _peak_gib()}
    del model, optimizer, inputs
    vlm.release()
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=list(SHAPES), default=None, help="default: humanvlm on a GPU, small on a CPU")
    parser.add_argument("--tokens", type=int, default=128, help="new tokens per sequence")
    parser.add_argument("--out", default=None, help="where to write the random checkpoint (default: a temp folder)")
    parser.add_argument("--no-train", action="store_true", help="skip the QLoRA step")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    import torch

    from tests.humanvlm_checkpoint import build_checkpoint

    cuda = torch.cuda.is_available()
    shape = args.shape or ("humanvlm" if cuda else "small")
    folder = Path(args.out or tempfile.mkdtemp(prefix=f"bench-{shape}-"))
    began = time.perf_counter()
    if not (folder / "config.json").exists():
        build_checkpoint(folder, text=SHAPES[shape]["text"], vision=SHAPES[shape]["vision"],
                         init_device="cuda" if cuda else "cpu")
        if cuda:
            torch.cuda.empty_cache()
    bandwidth = copy_bandwidth_gbs()
    results = {"gpu": torch.cuda.get_device_name() if cuda else None, "shape": shape,
               "build_s": round(time.perf_counter() - began, 1), "copy_bandwidth_gbs": bandwidth,
               "inference": [measure_inference(folder, q, args.tokens, bandwidth) for q in ("none", "4bit")]}
    if not args.no_train:
        results["qlora_step"] = measure_qlora_step(folder)
    print(json.dumps(results, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
