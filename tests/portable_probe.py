"""Run by another Python (the old transformers of `make transformers4`): load a model folder with
nothing but that library, as a serving stack or an older script would, and report what it sees.

    python tests/portable_probe.py FOLDER IMAGE PROMPT LOGITS_OUT

Prints one JSON line (library version, RoPE base, tokenizer class, prompt ids) and saves the
next-token logits after PROMPT (float32) to LOGITS_OUT with torch.save. Imports nothing from
this project: it must run under any transformers from 4.37 on.
"""

import json
import sys

import torch
import transformers
from PIL import Image
from transformers import AutoConfig, AutoImageProcessor, AutoTokenizer, LlavaForConditionalGeneration


def main(folder: str, image_path: str, prompt: str, logits_out: str) -> None:
    config = AutoConfig.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    images = AutoImageProcessor.from_pretrained(folder)
    model = LlavaForConditionalGeneration.from_pretrained(folder, torch_dtype=torch.float32).eval()
    ids = tokenizer(prompt, return_tensors="pt").input_ids  # one <image>: this version expands it itself
    pixels = images(Image.open(image_path).convert("RGB"), return_tensors="pt").pixel_values
    with torch.no_grad():
        logits = model(input_ids=ids, pixel_values=pixels, attention_mask=torch.ones_like(ids)).logits[0, -1]
    torch.save(logits.float(), logits_out)
    print(json.dumps({"transformers": transformers.__version__, "rope_theta": config.text_config.rope_theta,
                      "saved_dtype": str(config.torch_dtype), "tokenizer": type(tokenizer).__name__,
                      "chat_template": bool(tokenizer.chat_template), "ids": ids[0].tolist()}))


if __name__ == "__main__":
    main(*sys.argv[1:5])
