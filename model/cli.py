"""Command-line captioning: `caption PATH...` and `make-demo-model DIR`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import fields
from pathlib import Path

from model.generate import GenerationSettings
from model.loader import add_model_arguments, config_from_args
from model.prompts import PRESETS

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
PROGRESS_FROM = 4  # show a progress bar from this many images


def register(subparsers) -> None:
    p = subparsers.add_parser("caption", help="caption image files or folders from the command line",
                              description="Caption photos of people. Folders are searched recursively.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--preset", choices=list(PRESETS), default="detailed", help="caption preset (default detailed)")
    group.add_argument("--prompt", help="free-text prompt instead of a preset")
    p.add_argument("--json", action="store_true", help="one JSON object per line: path, caption, model, preset, seconds")
    p.add_argument("--batch-size", type=_positive_int, default=8, help="images per generate call (default 8)")
    add_model_arguments(p)
    add_generation_arguments(p)
    p.set_defaults(func=run_caption)

    d = subparsers.add_parser("make-demo-model", help="build the offline demo model into a folder",
                              description="Build the tiny untrained demo model (HumanVLM's architecture) from a fixed seed.")
    d.add_argument("out", metavar="DIR", help="folder to write the checkpoint to")
    d.set_defaults(func=run_make_demo)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def add_generation_arguments(parser: argparse.ArgumentParser) -> None:
    for f in fields(GenerationSettings):
        kind = int if f.name in ("max_new_tokens", "seed") else float
        parser.add_argument("--" + f.name.replace("_", "-"), type=kind, default=f.default, help=f.metadata["help"])


def settings_from_args(args) -> GenerationSettings:
    return GenerationSettings(**{f.name: getattr(args, f.name) for f in fields(GenerationSettings)})


def expand_paths(paths: list[str]) -> list[Path]:
    """Files as given (whatever their extension: the image gate judges them); folders searched."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            out.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES))
        else:
            out.append(path)
    return out


def run_caption(args) -> int:
    from tqdm import tqdm

    from model.images import ImageError, load_image
    from model.loader import load_model
    from model.prompts import resolve_prompt

    prompt = resolve_prompt(args.preset, args.prompt)
    preset = "custom" if args.prompt else args.preset
    paths = expand_paths(args.paths)
    if not paths:
        print("error: no images found in the given paths", file=sys.stderr)
        return 1
    vlm = load_model(config_from_args(args))
    if vlm.info.note and vlm.info.is_demo:
        print(vlm.info.note, file=sys.stderr)
    settings = settings_from_args(args)
    failed = 0
    bar = tqdm(total=len(paths), unit="img", disable=len(paths) < PROGRESS_FROM, file=sys.stderr)
    for start in range(0, len(paths), args.batch_size):
        batch = paths[start:start + args.batch_size]
        records: list[dict | None] = [None] * len(batch)  # emitted in input order, errors included
        images, slots = [], []
        for i, path in enumerate(batch):
            try:
                images.append(load_image(path))
                slots.append(i)
            except (ImageError, OSError) as exc:
                failed += 1
                records[i] = {"path": str(path), "error": _reason(exc), "model": vlm.info.name, "preset": preset}
        if images:
            began = time.perf_counter()
            captions = vlm.caption_batch(images, prompt, settings)
            each = (time.perf_counter() - began) / len(images)
            for i, caption in zip(slots, captions):
                records[i] = {"path": str(batch[i]), "caption": caption, "model": vlm.info.name,
                              "preset": preset, "seconds": round(each, 3)}
        for record in records:
            _emit(args, record)
        bar.update(len(batch))
    bar.close()
    return 1 if failed else 0


def _reason(exc: Exception) -> str:
    if isinstance(exc, FileNotFoundError):
        return f"{exc.filename}: no such file"
    return str(exc)


def _emit(args, record: dict) -> None:
    if args.json:
        print(json.dumps(record, ensure_ascii=False), flush=True)
    elif "error" in record:
        print(f"{record['path']}: error: {record['error']}", file=sys.stderr, flush=True)
    else:
        print(f"{record['path']}: {record['caption']}", flush=True)


def run_make_demo(args) -> int:
    from model.demo import build_demo_model

    out = build_demo_model(args.out)
    print(f"demo model written to {out}")
    return 0
