"""HumanVLM-shaped inference on a GPU: tokens/s and peak GPU memory, 16-bit vs 4-bit nf4.

    python -m tests.perf.bench_gpu [--shape humanvlm|small] [--tokens 256] [--out DIR]

No weights are downloaded: a checkpoint with HumanVLM's architecture (SigLIP so400m at 384 px,
Llama-3-8B, the 2-layer projector) and random weights is written to --out, then loaded back
through the product's own loader (`model.loader.load_model`) in each precision. Random weights
do not change speed or memory. `--shape small` runs the same path on a CPU in seconds (to check
the script); the figures that matter come from `--shape humanvlm` on a GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

# HumanVLM's published architecture (docs/humanvlm.md); `small` keeps the structure, shrinks the sizes.
SHAPES = {
    "humanvlm": {"vision": dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27,
                                num_attention_heads=16, image_size=384, patch_size=14),
                 "text": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                              num_attention_heads=32, num_key_value_heads=8, vocab_size=128320,
                              rope_theta=500000.0, max_position_embeddings=8192)},
    "small": {"vision": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=2, image_size=112, patch_size=14),
              "text": dict(hidden_size=128, intermediate_size=384, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, vocab_size=2048,
                           max_position_embeddings=4096)},
}


def build_checkpoint(shape: str, out: Path) -> Path:
    """Random-weight checkpoint of the given shape, with the demo model's tokenizer and a
    SigLIP processor at the shape's resolution (token ids stay inside any vocabulary here)."""
    import torch
    from transformers import LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, SiglipVisionConfig

    from model.demo import DemoSpec, _build_processor, _build_tokenizer

    dims = SHAPES[shape]
    tokenizer = _build_tokenizer(DemoSpec())
    vision = SiglipVisionConfig(**dims["vision"], vision_use_head=False)
    text = LlamaConfig(**dims["text"], pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                       bos_token_id=tokenizer.bos_token_id)
    config = LlavaConfig(vision_config=vision, text_config=text,
                         image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
                         image_seq_length=(vision.image_size // vision.patch_size) ** 2,
                         vision_feature_select_strategy="full", vision_feature_layer=-1)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.float16 if device == "cuda" else torch.float32  # 8.5 B params: never in fp32 on a GPU
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlavaForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    spec = DemoSpec(image_size=vision.image_size, patch_size=vision.patch_size)
    _build_processor(spec, tokenizer).save_pretrained(out)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return out


def measure(folder: Path, quant: str, tokens: int) -> dict:
    import torch
    from PIL import Image

    from model.generate import GenerationSettings
    from model.loader import LoadConfig, load_model

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    began = time.perf_counter()
    vlm = load_model(LoadConfig(model=str(folder), quant=quant))
    load_s = time.perf_counter() - began
    image = Image.new("RGB", (640, 480), (180, 120, 90))
    settings = GenerationSettings(max_new_tokens=tokens)
    inputs = vlm._inputs([image], [vlm.prompt_text([("Describe this photo of a person in detail.", None)])])
    kwargs = vlm._gen_kwargs(settings) | {"eos_token_id": None, "min_new_tokens": tokens}  # exactly `tokens`
    with torch.inference_mode():
        vlm.model.generate(**inputs, **(kwargs | {"max_new_tokens": 8, "min_new_tokens": 8}))  # warm-up
        if cuda:
            torch.cuda.synchronize()
        began = time.perf_counter()
        vlm.model.generate(**inputs, **kwargs)
        if cuda:
            torch.cuda.synchronize()
    seconds = time.perf_counter() - began
    result = {"quant": quant, "dtype": vlm.info.dtype, "device": vlm.info.device, "load_s": round(load_s, 1),
              "new_tokens": tokens, "tokens_per_s": round(tokens / seconds, 1),
              "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None}
    vlm.release()
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=list(SHAPES), default=None,
                        help="default: humanvlm on a GPU, small on a CPU")
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--out", default=None, help="where to write the random checkpoint (default: a temp folder)")
    args = parser.parse_args(argv)
    import torch

    cuda = torch.cuda.is_available()
    shape = args.shape or ("humanvlm" if cuda else "small")
    folder = build_checkpoint(shape, Path(args.out or tempfile.mkdtemp(prefix=f"bench-{shape}-")))
    results = {"gpu": torch.cuda.get_device_name() if cuda else None, "shape": shape,
               "runs": [measure(folder, quant, args.tokens) for quant in ("none", "4bit")]}
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
