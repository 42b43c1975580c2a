"""The offline demo model: a tiny, untrained model of HumanVLM's architecture family.

No model hub is reachable on many machines (CI, air-gapped laptops), so the product builds its
own small checkpoint from a fixed seed: a SigLIP vision tower, a Llama text model, LLaVA's
2-layer MLP projector, the `<image>` and `<pad>` tokens, a byte-level BPE tokenizer trained
here with `tokenizers`, and a Llama-3 style chat template. It is saved with `save_pretrained`
and loaded back through exactly the same code as HumanVLM (`model.loader.load_model`).
Its captions are gibberish until it is fine-tuned: the UI labels it as such.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

# Bump when the architecture or tokenizer changes: the cache folder name includes it.
DEMO_VERSION = "v2"

# Llama-3's special tokens plus HumanVLM's added `<image>` and `<pad>`.
BOS, EOT_TEXT, HEADER_START, HEADER_END, EOT = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
)
IMAGE_TOKEN, PAD_TOKEN = "<image>", "<pad>"
SPECIAL_TOKENS = [BOS, EOT_TEXT, HEADER_START, HEADER_END, EOT, IMAGE_TOKEN, PAD_TOKEN]

# HF chat templates trim the newline after block tags, so newlines are emitted explicitly.
LLAMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>' }}{{ '\\n\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<image>' }}{{ '\\n' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>' }}{{ '\\n\\n' }}"
    "{% endif %}"
)


@dataclass(frozen=True)
class DemoSpec:
    """Sizes of the demo model. Small enough to build in seconds and train on a laptop CPU."""

    seed: int = 0
    image_size: int = 112  # px; HumanVLM uses 384. 112 / 14 = 8x8 = 64 image tokens
    patch_size: int = 14  # as SigLIP so400m
    vision_hidden: int = 64
    vision_layers: int = 2
    vision_heads: int = 2
    text_hidden: int = 128
    text_layers: int = 2
    text_heads: int = 4
    text_kv_heads: int = 2  # grouped-query attention, as Llama-3
    vocab_size: int = 2048  # BPE merges learned up to this size, then padded to a multiple of 64
    max_positions: int = 4096  # RoPE: no learned position table, so this costs nothing


def default_cache_dir() -> Path:
    """Where `demo` is built on first use: $HUMANVLM_CACHE or ~/.cache/humanvlm-studio."""
    root = os.environ.get("HUMANVLM_CACHE") or Path.home() / ".cache" / "humanvlm-studio"
    return Path(root)


def demo_model_dir(cache_dir: Path | None = None) -> Path:
    return (cache_dir or default_cache_dir()) / f"demo-model-{DEMO_VERSION}"


def ensure_demo_model(cache_dir: Path | None = None) -> Path:
    """Return the demo model folder, building it once (safe when several processes race)."""
    from filelock import FileLock

    target = demo_model_dir(cache_dir)
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not (target / "config.json").exists():
            _build_in_a_child(target)
    return target


def _build_in_a_child(target: Path) -> None:
    """build_demo_model in a fresh interpreter. Building runs large tensor ops on this thread;
    afterwards, on a CPU, the small ops of generating on another thread (the model's generation
    thread) ran twice as slow for the rest of the process, as two OpenMP teams then compete."""
    import os
    import subprocess
    import sys

    code = ("import sys\nfrom model.demo import DemoModelError, build_demo_model\n"
            "try:\n    build_demo_model(sys.argv[1])\n"
            "except DemoModelError as exc:\n    print(exc, file=sys.stderr)\n    sys.exit(3)\n")
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", code, str(target)], env=env, capture_output=True, text=True)
    if done.returncode == 3:
        raise DemoModelError(done.stderr.strip().splitlines()[-1])
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"building the demo model failed (exit status {done.returncode}): {tail}")


class DemoModelError(RuntimeError):
    """The demo model cannot be written where asked."""

    user_facing = True


def build_demo_model(out_dir: str | Path, spec: DemoSpec = DemoSpec()) -> Path:
    """Build the demo checkpoint into `out_dir` (atomically: a temp folder renamed at the end).

    An existing `out_dir` is replaced only when it is empty or an earlier demo model: it is
    never someone's folder of other files."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not (out_dir / "demo_spec.json").is_file() and (
            not out_dir.is_dir() or any(out_dir.iterdir())):
        raise DemoModelError(f"{out_dir} exists and is not a demo model; choose a new or empty folder")
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".demo-build-", dir=out_dir.parent))
    except OSError as exc:
        raise DemoModelError(f"cannot write the demo model to {out_dir}: {exc.strerror or exc}") from exc
    try:
        tokenizer = _build_tokenizer(spec)
        model = _build_model(spec, tokenizer)
        processor = _build_processor(spec, tokenizer)
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        (tmp / "demo_spec.json").write_text(_json(asdict(spec) | {"version": DEMO_VERSION}))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _json(obj) -> str:
    import json

    return json.dumps(obj, indent=2, sort_keys=True)


def _build_tokenizer(spec: DemoSpec):
    """Byte-level BPE trained offline on a small corpus of human-scene language."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    # Like Llama-3: every encoded sequence starts with <|begin_of_text|>.
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, tok.token_to_id(BOS))]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOT,
        pad_token=PAD_TOKEN,
        extra_special_tokens={"image_token": IMAGE_TOKEN},
        padding_side="left",  # decoder-only batched generation
        model_max_length=spec.max_positions,
        chat_template=LLAMA3_CHAT_TEMPLATE,
    )
    return fast


def _corpus():
    """Sentences built from the vocabulary of human-scene captions (no external data)."""
    from model.prompts import PRESETS

    subjects = ["man", "woman", "person", "child", "boy", "girl", "astronaut", "athlete", "people"]
    faces = ["smiling", "short brown hair", "long blond hair", "dark eyes", "a beard", "glasses",
             "a neutral expression", "looking at the camera", "young", "middle-aged", "elderly"]
    clothes = ["white shirt", "blue jacket", "orange suit", "black dress", "red sweater", "jeans",
               "a hat", "a uniform", "sneakers", "a scarf", "a flight suit with patches"]
    actions = ["standing", "sitting", "walking", "running", "holding a helmet", "posing",
               "talking", "reading", "waving", "dancing", "holding a camera"]
    backgrounds = ["an office", "a park", "a street", "a studio", "a stage", "the sea", "a room",
                   "a plain backdrop", "a flag", "trees", "buildings", "an indoor setting"]
    shapes = ["red", "green", "blue", "yellow", "circle", "square", "triangle", "top", "bottom",
              "left", "right", "center", "and", "a", "the", "image", "shows", "at"]
    for text in PRESETS.values():
        yield text
    for i, s in enumerate(subjects):
        for j, f in enumerate(faces):
            c, a, b = clothes[(i + j) % len(clothes)], actions[(i * j) % len(actions)], backgrounds[j % len(backgrounds)]
            yield (f"The image shows a {s} with {f}, wearing a {c}. The {s} is {a} in front of {b}. "
                   f"The face is {f}; the body wears a {c}; the background is {b}.")
    yield " ".join(shapes) * 3
    yield "USER: ASSISTANT: user assistant system Describe this photo. What is the person doing?"


def _build_model(spec: DemoSpec, tokenizer):
    import torch
    from transformers import LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, SiglipVisionConfig

    vocab = len(tokenizer)
    padded_vocab = (vocab + 63) // 64 * 64  # as HumanVLM: embeddings padded to a multiple of 64
    vision = SiglipVisionConfig(
        hidden_size=spec.vision_hidden,
        intermediate_size=spec.vision_hidden * 4,
        num_hidden_layers=spec.vision_layers,
        num_attention_heads=spec.vision_heads,
        image_size=spec.image_size,
        patch_size=spec.patch_size,
        vision_use_head=False,
    )
    text = LlamaConfig(
        vocab_size=padded_vocab,
        hidden_size=spec.text_hidden,
        intermediate_size=spec.text_hidden * 3,
        num_hidden_layers=spec.text_layers,
        num_attention_heads=spec.text_heads,
        num_key_value_heads=spec.text_kv_heads,
        max_position_embeddings=spec.max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        image_seq_length=(spec.image_size // spec.patch_size) ** 2,
        # SigLIP has no CLS token, so every patch feature is kept.
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        projector_hidden_act="gelu",
    )
    torch.manual_seed(spec.seed)
    model = LlavaForConditionalGeneration(config)
    _prefer_whole_words(model, tokenizer)
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(EOT_TEXT)]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model


def _prefer_whole_words(model, tokenizer) -> None:
    """Zero the output rows of byte fragments and special tokens.

    An untrained model picks tokens at random; random byte fragments decode to invalid UTF-8
    and control characters. With their logits at 0 (and whole-word tokens keeping random
    logits), the untrained demo speaks in real, if meaningless, words. Training is unaffected:
    the rows stay trainable.
    """
    import torch

    vocab = tokenizer.get_vocab()
    keep = [i for tok, i in vocab.items() if tok.startswith("Ġ") and len(tok) > 2 and tok[1:].isalpha()]
    weight = model.lm_head.weight  # (padded vocab, hidden)
    mask = torch.zeros(weight.shape[0], dtype=torch.bool)
    mask[keep] = True
    with torch.no_grad():
        weight[~mask] = 0.0


def _build_processor(spec: DemoSpec, tokenizer):
    from transformers import LlavaProcessor
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    # HumanVLM's preprocessing: resize to a square, rescale 1/255, mean = std = 0.5, bicubic.
    image_processor = SiglipImageProcessorPil(
        size={"height": spec.image_size, "width": spec.image_size},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        resample=3,
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=spec.patch_size,
        vision_feature_select_strategy="full",
        num_additional_image_tokens=0,
        image_token=IMAGE_TOKEN,
        chat_template=LLAMA3_CHAT_TEMPLATE,
    )
