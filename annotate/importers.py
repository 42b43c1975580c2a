"""Import HumanCaption datasets and LLaVA JSON into the review queue as drafts.

Formats (docs/humanvlm.md):
- HumanCaption-HQ parquet: `url`, `human_caption_hq` (LLaVA turns; the `gpt` turn is the draft).
- HumanCaption-10M parquet: `url`, `image` (relative path), `human_caption` (plain text).
- LLaVA JSON: a list of {id, image, conversations}; `image` is relative to the JSON's folder.
- The app's own exports (annotate.export), as a folder or file by file: HumanCaption-HQ parquet
  whose `image` is a `datasets` Image ({bytes, path}: the embedded bytes are used, else the path
  relative to the parquet), and LLaVA JSON. Their `image_sha256` (the queue's identity of the
  photo) makes re-importing into the queue the export came from a duplicate, not a second copy
  (exported photos are re-encoded, so their bytes hash differently); their `licence` is kept.

Parquet files are streamed (`ParquetFile.iter_batches`), so memory stays flat however large the
file; each chunk is validated, then inserted with one executemany per table. Malformed rows are
skipped and reported by row number (0-based, as `datasets` and pandas index them). Images
referenced only by URL are stored as URLs unless `fetch_images` is set; local image files are
vetted by `model.images.load_image` and stored under the data folder.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from annotate.blobs import prepare_image, url_identity
from annotate.checks import check_draft
from annotate.errors import ImportFailed, QueueError
from annotate.fetch import FetchLimits, fetch_bytes
from annotate.records import Draft, NewItem
from annotate.store import Store

MAX_REASONS = 20  # bad-row reasons kept in the result; the count covers all of them


@dataclass
class ImportResult:
    path: str
    format: str
    rows_read: int = 0
    imported: int = 0
    duplicates: int = 0
    bad: int = 0
    bad_reasons: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def note_bad(self, row: int, reason: str) -> None:
        self.bad += 1
        if len(self.bad_reasons) < MAX_REASONS:
            self.bad_reasons.append(f"row {row}: {reason}")

    def summary(self) -> str:
        return (f"{self.path}: {self.rows_read} rows read, {self.imported} imported, "
                f"{self.duplicates} duplicates, {self.bad} bad ({self.seconds:.1f} s)")


@dataclass
class _Context:
    store: Store
    folder: Path  # relative image paths are resolved against this
    source: str  # the dataset name recorded as the draft's model
    version: str  # recorded as the draft's model version: which file it came from
    fetch_images: bool
    fetch_limits: FetchLimits
    licence: str | None


class Parsed(NamedTuple):
    """What a parser makes of one raw row (or it raises _BadRow)."""

    url: str | None
    image: str | bytes | None  # a path relative to the dataset's folder, or the image's bytes
    prompt: str | None
    caption: str
    identity: str | None = None  # the exporting queue's image sha256, when the row carries one
    licence: str | None = None


class _BadRow(Exception):
    pass


def import_file(store: Store, path: str | Path, fetch_images: bool = False, chunk_rows: int = 5000,
                progress: Callable[[int], None] | None = None, licence: str | None = None,
                fetch_limits: FetchLimits = FetchLimits(), overlap: int = 1, gold: bool = False) -> ImportResult:
    """Import one dataset file; `progress(rows)` is called after each chunk.

    overlap: independent reviews per item; gold: the captions are references (gold items)."""
    path = Path(path)
    if not path.is_file():
        raise ImportFailed(f"{path} does not exist or is not a file")
    start = time.perf_counter()
    fmt, source, chunks = _open(path, chunk_rows)
    result = ImportResult(str(path), fmt)
    ctx = _Context(store, path.parent.resolve(), source, f"import:{path.name}",
                   fetch_images, fetch_limits, licence)
    parse = _PARSERS[fmt]
    for first_row, raw_rows in chunks:
        new_items = []
        for offset, raw in enumerate(raw_rows):
            row_number = first_row + offset
            try:
                new_items.append(_to_new_item(ctx, row_number, parse(raw)))
            except (_BadRow, QueueError, ValueError) as exc:  # ImageError is a ValueError
                result.note_bad(row_number, str(exc))
        result.rows_read += len(raw_rows)
        done = store.enqueue_many(new_items, overlap=overlap, gold=gold)
        result.imported += done.imported
        result.duplicates += done.duplicates
        if progress:
            progress(len(raw_rows))
    result.seconds = time.perf_counter() - start
    return result


def dataset_files(path: str | Path) -> list[Path]:
    """The files to import for a path: a file as it is; a folder (an export of this app, or any
    folder of datasets) gives its .parquet files, else its LLaVA .json files."""
    path = Path(path)
    if not path.is_dir():
        return [path]
    files = sorted(path.glob("*.parquet"))
    if not files:
        files = sorted(p for p in path.glob("*.json") if p.name not in ("manifest.json", "dataset_info.json"))
    if not files:
        raise ImportFailed(f"{path} holds no .parquet or LLaVA .json file to import")
    return files


def count_rows(path: str | Path) -> int | None:
    """Rows in a parquet file, from its footer (for a progress bar); None for other files."""
    if Path(path).suffix.lower() != ".parquet":
        return None
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path).metadata.num_rows
    except (OSError, ValueError):  # unreadable (ArrowInvalid is a ValueError): import_file says why
        return None


def _open(path: Path, chunk_rows: int) -> tuple[str, str, Iterator[tuple[int, list]]]:
    if path.suffix.lower() == ".json":
        return "llava", "llava-json", _json_chunks(path, chunk_rows)
    if path.suffix.lower() != ".parquet":
        raise ImportFailed(f"{path.name}: import reads .parquet (HumanCaption) or .json (LLaVA) files")
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (OSError, ValueError) as exc:  # pyarrow: ArrowInvalid (a ValueError) or OSError
        raise ImportFailed(f"{path.name} is not a readable parquet file: {exc}") from exc
    names = set(parquet.schema_arrow.names)
    if {"url", "human_caption_hq"} <= names:
        extra = [c for c in ("image", "image_sha256", "licence") if c in names]  # the app's own export
        return "humancaption-hq", "HumanCaption-HQ", _parquet_chunks(parquet, ["url", "human_caption_hq", *extra],
                                                                     chunk_rows)
    if {"url", "human_caption"} <= names:
        columns = ["url", "human_caption"] + (["image"] if "image" in names else [])
        return "humancaption-10m", "HumanCaption-10M", _parquet_chunks(parquet, columns, chunk_rows)
    raise ImportFailed(
        f"{path.name} has columns {sorted(names)}; expected url + human_caption_hq "
        "(HumanCaption-HQ) or url + image + human_caption (HumanCaption-10M)"
    )


def _parquet_chunks(parquet, columns: list[str], chunk_rows: int) -> Iterator[tuple[int, list]]:
    first = 0
    for batch in parquet.iter_batches(batch_size=chunk_rows, columns=columns):
        rows = batch.to_pylist()
        yield first, rows
        first += len(rows)


def _json_chunks(path: Path, chunk_rows: int) -> Iterator[tuple[int, list]]:
    # LLaVA files are one JSON list; json has no streaming reader, so this loads the list
    # (LLaVA-format files are read whole by their training tools as well).
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ImportFailed(f"{path.name} is not valid JSON: {exc}") from exc
    if not isinstance(data, list):
        raise ImportFailed(f"{path.name}: a LLaVA file is a JSON list of {{id, image, conversations}}")
    for first in range(0, len(data), chunk_rows):
        yield first, data[first:first + chunk_rows]


def _parse_hq(raw: dict) -> Parsed:
    prompt, caption = _from_turns(raw.get("human_caption_hq"))
    image = raw.get("image")
    if isinstance(image, dict):  # a `datasets` Image: embedded bytes, else a relative path
        image = image.get("bytes") or image.get("path")
    if image is not None and not isinstance(image, (str, bytes)):
        raise _BadRow("image is neither a path, bytes nor {bytes, path}")
    url = raw.get("url")
    url = _url(url) if url is not None or not image else None  # a photo without URL: an uploaded one
    return Parsed(url, image or None, prompt, caption, _identity(raw), _text(raw.get("licence")))


def _parse_10m(raw: dict) -> Parsed:
    caption = raw.get("human_caption")
    if not isinstance(caption, str) or not caption.strip():
        raise _BadRow("human_caption is empty or missing")
    image = raw.get("image")
    url = raw.get("url")
    if not (isinstance(url, str) and url.strip()) and not image:
        raise _BadRow("neither url nor image is set")
    return Parsed((_url(url) if isinstance(url, str) and url.strip() else None), image or None, None, caption)


def _parse_llava(raw) -> Parsed:
    if not isinstance(raw, dict):
        raise _BadRow("not a JSON object")
    image = raw.get("image")
    if not isinstance(image, str) or not image.strip():
        raise _BadRow("no image (text-only conversations cannot be reviewed as captions)")
    prompt, caption = _from_turns(raw.get("conversations"))
    return Parsed(None, image, prompt, caption, _identity(raw))


def _identity(raw: dict) -> str | None:
    sha = raw.get("image_sha256")
    return sha if isinstance(sha, str) and len(sha) == 64 else None


def _text(value) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _from_turns(turns) -> tuple[str | None, str]:
    """(prompt without <image>, caption) from LLaVA turns: the first human and gpt turns."""
    if not isinstance(turns, list):
        raise _BadRow("conversation turns are missing")
    texts: dict[str, str] = {}
    for turn in turns:
        if isinstance(turn, dict) and isinstance(turn.get("value"), str):
            texts.setdefault(turn.get("from"), turn["value"])
    caption = texts.get("gpt", "")
    if not caption.strip():
        raise _BadRow("no gpt turn with a caption")
    prompt = texts.get("human", "").replace("<image>", "").strip() or None
    return prompt, caption.strip()


def _url(url) -> str:
    if not isinstance(url, str) or not url.strip().lower().startswith(("http://", "https://")):
        raise _BadRow(f"url is not an http(s) URL: {str(url)[:120]!r}")
    return url.strip()


_PARSERS = {"humancaption-hq": _parse_hq, "humancaption-10m": _parse_10m, "llava": _parse_llava}


def _to_new_item(ctx: _Context, row: int, parsed: Parsed) -> NewItem:
    url, image = parsed.url, parsed.image
    licence = ctx.licence or parsed.licence
    draft = Draft(ctx.source, ctx.version, parsed.caption, prompt=parsed.prompt, settings={"row": row})
    check_draft(draft)  # empty or over-long captions are bad rows, reported and skipped
    if parsed.identity and ctx.store.item_for_image(parsed.identity) is not None:
        # Exported from this queue: the same photo, re-encoded. Counted as a duplicate.
        return NewItem(parsed.identity, "content", draft, url=url, licence=licence)
    local = _local_file(ctx.folder, image) if isinstance(image, str) else None
    if isinstance(image, bytes):
        prepared = prepare_image(image)
    elif local is not None:
        prepared = prepare_image(local)
    elif url is None:
        raise _BadRow(f"image file {image!r} not found next to the dataset")
    elif ctx.fetch_images:
        prepared = _fetched(ctx, url)
        if prepared is None:  # this URL is already queued: count it as a duplicate
            return NewItem(url_identity(url), "url", draft, url=url, licence=licence)
    else:
        return NewItem(url_identity(url), "url", draft, url=url, licence=licence)
    path = ctx.store.files.store(prepared)
    return NewItem(prepared.sha256, "content", draft, url=url, path=path,
                   width=prepared.width, height=prepared.height, licence=licence)


def _fetched(ctx: _Context, url: str):
    if ctx.store.item_for_image(url_identity(url)) is not None:
        return None
    return prepare_image(fetch_bytes(url, ctx.fetch_limits))


def _local_file(folder: Path, relative: str) -> Path | None:
    """The image file for a relative path inside `folder`; paths leaving it are refused."""
    candidate = (folder / relative).resolve()
    if Path(relative).is_absolute() or not candidate.is_relative_to(folder):
        raise _BadRow(f"image path {relative!r} points outside the dataset's folder")
    return candidate if candidate.is_file() else None
