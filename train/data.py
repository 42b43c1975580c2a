"""Read an export of the review queue and turn it into training examples.

Two formats, as `app.py export` writes them (see docs/humanvlm.md):
- `llava`: JSON lists of `{id, image, conversations}`, images relative to the JSON file;
- `humancaptionhq`: parquet with `human_caption_hq` (LLaVA-style turns) and an `image` path
  (or only a `url`: such rows cannot be trained on and are counted as skipped).
The train/held-out split is the export's own (deterministic by image hash): either one file
per split (`train.json`, `test.parquet`, ...) or a `split` field on every row. The export calls
its held-out split `test` (the name `datasets` knows); here it is `heldout` (aliases below).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from train.errors import DataError

SPLITS = ("train", "heldout")
SPLIT_ALIASES = {"train": "train", "heldout": "heldout", "held_out": "heldout", "held-out": "heldout",
                 "test": "heldout", "eval": "heldout", "validation": "heldout", "val": "heldout"}
IMAGE_PLACEHOLDER = "<image>"


@dataclass(frozen=True)
class Example:
    """One approved correction: the photo, the question asked, the reviewer's caption."""

    id: str  # the review-queue item id (provenance)
    image: Path | None  # local file; None when the export only knows a URL
    url: str | None
    prompt: str  # the user turn without the <image> placeholder
    answer: str  # the reviewer's caption
    split: str


class ExportData:
    """An export folder: its format, manifest and examples per split."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder).resolve()
        if not self.folder.is_dir():
            raise DataError(f"no export folder at {folder}: run `python app.py export --out DIR` first")
        manifest = self.folder / "manifest.json"
        self.manifest: dict = json.loads(manifest.read_text()) if manifest.exists() else {}
        self.files = _data_files(self.folder)
        self.format = "humancaptionhq" if self.files[0].suffix == ".parquet" else "llava"
        self._examples = [ex for path in self.files for ex in _read_file(path)]

    def split(self, name: str) -> list[Example]:
        """Examples of a split (`train`, `heldout` or `all`) that have a local image."""
        if name == "all":
            chosen = self._examples
        else:
            chosen = [e for e in self._examples if e.split == SPLIT_ALIASES.get(name, name)]
        return [e for e in chosen if e.image is not None]

    def counts(self) -> dict[str, int]:
        out = {s: sum(1 for e in self._examples if e.split == s and e.image is not None) for s in SPLITS}
        out["skipped_no_image"] = sum(1 for e in self._examples if e.image is None)
        return out

    def describe(self) -> dict:
        """The data manifest saved with a trained version: which export and which items."""
        digest = hashlib.sha256()
        for path in self.files:
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
        return {
            "export": str(self.folder), "format": self.format, "files": [p.name for p in self.files],
            "sha256": digest.hexdigest(), "counts": self.counts(),
            "export_manifest": {k: v for k, v in self.manifest.items() if k != "item_ids"},
            "items": {s: [e.id for e in self.split(s)] for s in SPLITS},
        }


def _data_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix == ".parquet")
    if not files:
        files = sorted(p for p in folder.iterdir() if p.suffix == ".json" and p.name != "manifest.json"
                       and not p.name.startswith(".") and _looks_like_llava(p))
    if not files:
        raise DataError(f"{folder} holds no llava JSON or humancaptionhq parquet export")
    return files


def _looks_like_llava(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(64).lstrip().startswith(b"[")


def _split_of(path: Path, row: dict) -> str:
    value = row.get("split")
    if value is None:  # one file per split: train.json, heldout.parquet, export_train.json ...
        stem = path.stem.lower()
        value = next((a for a in SPLIT_ALIASES if stem == a or stem.endswith(("_" + a, "-" + a))), None)
    split = SPLIT_ALIASES.get(str(value).lower()) if value is not None else None
    if split is None:
        raise DataError(f"{path.name}: cannot tell the train/held-out split of its rows "
                        "(no 'split' field and the file name names no split)")
    return split


def _read_file(path: Path) -> list[Example]:
    rows = _parquet_rows(path) if path.suffix == ".parquet" else _json_rows(path)
    out = []
    for number, row in enumerate(rows, start=1):
        try:
            out.append(_example(path, row))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise DataError(f"{path.name}, row {number}: not a caption record ({exc})") from exc
    return out


def _json_rows(path: Path) -> list[dict]:
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    if not isinstance(rows, list):
        raise DataError(f"{path.name} is not a llava JSON list")
    return rows


def _parquet_rows(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several unrelated types for unreadable files
        raise DataError(f"cannot read {path}: {exc}") from exc
    return table.to_pylist()


def _example(path: Path, row: dict) -> Example:
    turns = row.get("conversations") if "conversations" in row else row["human_caption_hq"]
    if isinstance(turns, str):
        turns = json.loads(turns)
    human = next(t["value"] for t in turns if t["from"] == "human")
    answer = next(t["value"] for t in turns if t["from"] == "gpt")
    prompt = human.replace(IMAGE_PLACEHOLDER, "").strip()
    relative = row.get("image")
    if isinstance(relative, dict):  # a `datasets` Image ({bytes, path}), as app.py export writes it
        relative = relative.get("path")
    image = (path.parent / relative).resolve() if relative else None
    item_id = row.get("item_id", row.get("id"))
    if item_id is None:
        raise KeyError("id")
    if not answer or not answer.strip():
        raise ValueError("empty caption")
    return Example(id=str(item_id), image=image, url=row.get("url"), prompt=prompt, answer=answer.strip(),
                   split=_split_of(path, row))


# ---- training text --------------------------------------------------------------------------


def prompt_and_completion(vlm, question: str, answer: str) -> tuple[str, str]:
    """The exact text inference sees (`prompt`) and what the model must answer (`completion`).

    Both come from the model's own prompt format, so training and serving never disagree, and
    control tokens typed in a prompt or caption are escaped as at inference. The tokenizer's BOS
    is spelled out because TRL's collator tokenizes without special tokens.
    """
    fmt, tokenizer = vlm.prompt_format, vlm.processor.tokenizer
    prompt = vlm.prompt_text([(question, None)])
    completion = vlm.prompt_text([(question, answer)])[len(prompt):]
    if fmt.stop_token is None:  # the card format ends an answer with the tokenizer's eos
        completion = completion.removesuffix(fmt.turn_end) + tokenizer.eos_token
    if _adds_bos(tokenizer):
        prompt = tokenizer.bos_token + prompt
    return prompt, completion


def _adds_bos(tokenizer) -> bool:
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer("a")["input_ids"][:1] == [bos]


def to_dataset(examples: list[Example], vlm, default_prompt: str):
    """A `datasets.Dataset` of prompt/completion/image rows; images are decoded when a batch is built."""
    from datasets import Dataset

    from model.images import load_image

    prompts, completions = [], []
    for ex in examples:
        prompt, completion = prompt_and_completion(vlm, ex.prompt or default_prompt, ex.answer)
        prompts.append(prompt)
        completions.append(completion)
    table = Dataset.from_dict({"image": [str(e.image) for e in examples], "prompt": prompts,
                               "completion": completions})

    def decode(batch: dict) -> dict:
        return batch | {"image": [load_image(p) for p in batch["image"]]}

    return table.with_transform(decode)
