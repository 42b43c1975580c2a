"""A reduced real-shape HumanVLM checkpoint, built in the tests (no hub, no download).

Everything the serving and training code can observe is HumanVLM's (docs/humanvlm.md): a
`LlavaForConditionalGeneration` with a SigLIP tower at 384 px / patch 14 (729 patches, 728 image
features with the "default" strategy and feature layer -2), the Llama-3 special tokens at their
real ids (`<|begin_of_text|>` 128000 ... `<|eot_id|>` 128009, 256 in all), HumanVLM's added
`<unk>` 128256, `<image>` 128257 and `<pad>` 128258, the text vocabulary padded to 128320, RoPE
base 500000, 8 KV heads, Meta's Llama-3 chat template, weights saved in float16, a generation
config whose eos is 128001 (the unverified case), and, as on the hub, no processor_config.json
and no chat_template.json. Only the hidden sizes are tiny and the weights random, so it loads
and generates in about a second on a CPU.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

VERSION = "v1"  # bump when the builder changes: the cache folder name includes it
BOS_ID, EOS_TEXT_ID, HEADER_START_ID, HEADER_END_ID, EOT_ID = 128000, 128001, 128006, 128007, 128009
UNK_ID, IMAGE_ID, PAD_ID = 128256, 128257, 128258
VOCAB_SIZE = 128320  # 128259 padded to a multiple of 64
IMAGE_FEATURES = 728  # (384 / 14)^2 = 729 patches, minus the first ("default" strategy)

# Meta-Llama-3-8B-Instruct's chat template, verbatim.
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + "
    "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


def llama3_special_tokens() -> list[str]:
    """Llama-3's 256 special tokens in id order (128000-128255)."""
    named = {0: "<|begin_of_text|>", 1: "<|end_of_text|>", 6: "<|start_header_id|>", 7: "<|end_header_id|>",
             9: "<|eot_id|>"}
    out, reserved = [], 0
    for offset in range(256):
        if offset in named:
            out.append(named[offset])
        else:
            out.append(f"<|reserved_special_token_{reserved}|>")
            reserved += 1
    return out


def ensure_checkpoint(root: Path | None = None) -> Path:
    """The checkpoint folder, built once per cache folder (safe when test processes race)."""
    from filelock import FileLock

    from model.demo import default_cache_dir

    target = (root or default_cache_dir()) / f"humanvlm-reduced-{VERSION}"
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not (target / "config.json").exists():
            tmp = Path(tempfile.mkdtemp(prefix=".reduced-", dir=target.parent))
            try:
                build_checkpoint(tmp)
                os.replace(tmp, target)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
    return target


# Tiny by default; the benchmarks pass larger sizes (same configuration keys and tokens).
TEXT_SIZES = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=16)
VISION_SIZES = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)


def build_checkpoint(out: Path, seed: int = 0, text: dict | None = None, vision: dict | None = None,
                     max_shard_size: str = "5GB", init_device: str = "cpu") -> Path:
    """Write the checkpoint to `out`. `init_device="cuda"` builds full-size weights on a GPU
    directly in float16 (8.5 B random parameters initialise in seconds there, minutes on a CPU)."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration
    from transformers import SiglipVisionConfig

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _build_tokenizer(out)
    vision = SiglipVisionConfig(**(VISION_SIZES | (vision or {})), image_size=384, patch_size=14)
    text = LlamaConfig(**(TEXT_SIZES | (text or {})), vocab_size=VOCAB_SIZE, num_key_value_heads=8,
                       max_position_embeddings=8192,
                       rope_theta=500000.0, rms_norm_eps=1e-5, bos_token_id=BOS_ID, eos_token_id=EOT_ID,
                       pad_token_id=PAD_ID, tie_word_embeddings=False)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=IMAGE_ID,
                         image_seq_length=IMAGE_FEATURES, vision_feature_layer=-2,
                         vision_feature_select_strategy="default", projector_hidden_act="gelu")
    config.pad_token_id = PAD_ID
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    if init_device != "cpu":
        torch.set_default_dtype(torch.float16)
    try:
        with torch.device(init_device):
            model = LlavaForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    model.generation_config = GenerationConfig(bos_token_id=BOS_ID, eos_token_id=EOS_TEXT_ID, pad_token_id=PAD_ID)
    model.to(torch.float16).save_pretrained(out, max_shard_size=max_shard_size)  # HumanVLM's weights are float16
    (out / "preprocessor_config.json").write_text(json.dumps({
        "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": [0.5, 0.5, 0.5],
        "image_processor_type": "SiglipImageProcessor", "image_std": [0.5, 0.5, 0.5], "resample": 3,
        "rescale_factor": 1 / 255, "size": {"height": 384, "width": 384}}, indent=2))
    return out


def _build_tokenizer(out: Path) -> None:
    """Byte-level BPE: a small learned vocabulary, unreachable fillers up to id 127999, then the
    special tokens at their real ids."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    from model.demo import _corpus

    learner = Tokenizer(models.BPE())
    learner.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    learner.train_from_iterator(_corpus(), trainer=trainers.BpeTrainer(
        vocab_size=1500, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    learned = json.loads(learner.to_str())["model"]
    vocab = dict(learned["vocab"])
    for i in range(len(vocab), BOS_ID):
        vocab[f"filler{i}"] = i  # never produced by a merge, decodes to plain letters
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in learned["merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t in llama3_special_tokens() + ["<unk>", "<image>", "<pad>"]])
    assert tok.token_to_id("<|eot_id|>") == EOT_ID and tok.token_to_id("<pad>") == PAD_ID
    tok.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
        special_tokens=[("<|begin_of_text|>", BOS_ID)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                                   unk_token="<unk>", pad_token="<pad>", chat_template=LLAMA3_TEMPLATE,
                                   model_max_length=8192)
    fast.save_pretrained(out)
    # As on the hub: a plain fast tokenizer, the template inside tokenizer_config.json.
    config_path = out / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    if not config.get("chat_template"):
        config["chat_template"] = LLAMA3_TEMPLATE
    config_path.write_text(json.dumps(config, indent=2))
    (out / "chat_template.jinja").unlink(missing_ok=True)
    (out / "chat_template.json").unlink(missing_ok=True)
