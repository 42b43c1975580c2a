"""Export reviewed items as training data: HumanCaption-HQ parquet or LLaVA JSON.

Layout of an export folder (one file per split, named as `datasets` expects: "train" and
"test", the held-out split; a split without rows has no file, and manifest.json lists the files):

    humancaptionhq: train.parquet, test.parquet, images/<sha256>.<png|jpg>, README.md, manifest.json
    llava:          train.json,    test.json,    images/<sha256>.<png|jpg>, README.md, manifest.json,
                    dataset_info.json (LLaMA-Factory)

README.md is a dataset card whose `configs:` map the splits to the files (annotate.card), so
`datasets.load_dataset(folder)` gives both splits.
Parquet columns: `url`, `image` (a `datasets` Image: {bytes, path} with the bytes embedded and
`path` naming the same file under images/; null for URL-only images),
`human_caption_hq` (LLaVA turns: human prompt, gpt caption), the structured fields `face`,
`body`, `action`, `background`, and provenance: `item_id`, `image_sha256`, `model_name`,
`model_version`, `reviewer`, `edit_rate`, `licence`, `split`.
LLaVA rows are {id, image, image_sha256, conversations}; items whose image was never fetched (URL only) have
no file to point at and are left out (counted in the manifest as `skipped_without_image`).

The split is a function of the image hash (first 32 bits / 2**32 < split: train), so an image
lands in the same split in every export and evaluation images never leak into training. One
exception keeps small exports usable: when two or more photos are exported and all fall on one
side (split < 1), the one closest to the other side moves there, so both splits have a photo.
The folder is written atomically (annotate.atomic) and every exported image is re-encoded
from pixels only: no EXIF, GPS, ICC or text metadata survives.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import Connection, func, select

from annotate import card
from annotate.atomic import fsync_file, staged_folder
from annotate.errors import ExportFailed, InvalidInput
from annotate.records import STATUSES
from annotate.store import Store
from annotate.views import IMAGES, ITEMS

FORMATS = ("humancaptionhq", "llava")
SPLITS = ("train", "test")  # "test" is the held-out split (the name `datasets` knows)
CHUNK_ROWS = 20_000
IMAGE_CHUNK_ROWS = 256  # rows per chunk when images are embedded: bounds the bytes held in memory
TURN = pa.struct([("from", pa.string()), ("value", pa.string())])
IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])  # `datasets`' Image storage
SCHEMA = card.with_hf_features(pa.schema([
    ("url", pa.string()), ("image", IMAGE), ("human_caption_hq", pa.list_(TURN)),
    ("face", pa.string()), ("body", pa.string()), ("action", pa.string()), ("background", pa.string()),
    ("item_id", pa.int64()), ("image_sha256", pa.string()), ("model_name", pa.string()),
    ("model_version", pa.string()), ("reviewer", pa.string()), ("edit_rate", pa.float64()),
    ("licence", pa.string()), ("split", pa.string()),
]))
_COLUMNS = (ITEMS.c.id, IMAGES.c.sha256, IMAGES.c.path, IMAGES.c.source_url, IMAGES.c.licence,
            ITEMS.c.model_name, ITEMS.c.model_version, ITEMS.c.decided_by, ITEMS.c.edit_rate,
            ITEMS.c.prompt, func.coalesce(ITEMS.c.caption, ITEMS.c.draft_caption), ITEMS.c.fields_json,
            ITEMS.c.decided_at)


@dataclass
class ExportResult:
    out_dir: Path
    format: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    images_written: int = 0
    faces_blurred: int = 0
    skipped_without_image: int = 0
    item_ids: dict[str, list[int]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    blur_faces: bool = False
    rescued: int = 0  # photos moved so that a small export has both splits (see the module doc)
    # For the dataset card: rows per licence, per (model name, version); reviewers; review dates.
    licences: Counter = field(default_factory=Counter)
    models: Counter = field(default_factory=Counter)
    reviewers: int = 0
    review_dates: tuple[str | None, str | None] | None = None

    def summary(self) -> str:
        # Asked to blur and none found is worth saying: the reviewer should look before sharing.
        faces = f", {self.faces_blurred} faces blurred" if self.blur_faces or self.faces_blurred else ""
        left_out = (f"; {self.skipped_without_image} left out (photo never fetched: import with --fetch-images, "
                    "or claim them in Review, which fetches it)" if self.skipped_without_image else "")
        return (f"{self.out_dir}: {self.counts['train']} train + {self.counts['test']} held-out (test) "
                f"rows ({self.format}), {self.images_written} image{'' if self.images_written == 1 else 's'}"
                f"{faces}{left_out}")


def split_of(sha256: str, split: float) -> str:
    """'train' or 'test', decided by the image hash alone."""
    return "train" if int(sha256[:8], 16) / 2**32 < split else "test"


def rescued_photo(shas: list[str], split: float) -> tuple[str, str] | None:
    """(sha, split) of the photo moved so that neither split is empty, when `shas` (the photos
    exported with a file) are two or more and all fall on one side; None when no move is needed."""
    if split >= 1.0 or len(shas) < 2:
        return None
    sides = {split_of(s, split) for s in shas}
    if sides == {"train"}:  # the closest to the test side goes to test
        return max(shas, key=lambda s: int(s[:8], 16)), "test"
    if sides == {"test"}:
        return min(shas, key=lambda s: int(s[:8], 16)), "train"
    return None


def export(store: Store, out_dir: str | Path, format: str = "humancaptionhq", status: str = "approved",
           blur_faces: bool = False, split: float = 0.9,
           progress: Callable[[int], None] | None = None) -> ExportResult:
    """Write items of `status` to `out_dir`; `progress(rows)` is called after each chunk."""
    _check(format, status, split)
    out_dir = Path(out_dir).resolve()
    result = ExportResult(out_dir, format, blur_faces=blur_faces)
    try:
        with staged_folder(out_dir, _is_replaceable) as staged:
            with store.engine.connect() as conn:
                joined = select(*_COLUMNS).join(IMAGES, ITEMS.c.image_id == IMAGES.c.id)
                photos = list(conn.scalars(select(IMAGES.c.sha256).join(ITEMS, ITEMS.c.image_id == IMAGES.c.id)
                                           .where(ITEMS.c.status == status, IMAGES.c.path.is_not(None),
                                                  ITEMS.c.gold_caption.is_(None))))
                rescued = rescued_photo(photos, split)
                writer = _Writer(staged, format, split, blur_faces, store, result, rescued)
                # Gold items are references for scoring reviewers, never training data.
                query = joined.where(ITEMS.c.status == status, ITEMS.c.gold_caption.is_(None)).order_by(ITEMS.c.id)
                size = min(CHUNK_ROWS, IMAGE_CHUNK_ROWS) if photos else CHUNK_ROWS
                try:
                    for rows in _chunks(conn, query, size):
                        writer.add(rows)
                        if progress:
                            progress(len(rows))
                finally:
                    writer.close()
            files = {name: f"{name}.{'json' if format == 'llava' else 'parquet'}" for name in SPLITS
                     if (staged / f"{name}.{'json' if format == 'llava' else 'parquet'}").is_file()}
            card.write_card(staged, result, files, status, split)
            if format == "llava":
                card.write_llamafactory_info(staged, files)
            _write_manifest(staged, result, status, split, blur_faces)
    except FileExistsError as exc:
        raise ExportFailed(f"{out_dir} exists and is not a previous export; choose an empty or new folder") from exc
    except (BlockingIOError, OSError) as exc:  # disk full, permissions: the old export stays
        raise ExportFailed(f"export to {out_dir} failed, previous export left intact: {exc}") from exc
    return result


@dataclass(frozen=True)
class ExportFolder:
    """An export folder as its manifest describes it (what `list_exports` offers to train on)."""

    name: str
    path: Path
    format: str
    status: str
    created_at: str
    counts: dict[str, int]

    def label(self) -> str:
        return (f"{self.name}: {self.counts.get('train', 0)} train + {self.counts.get('test', 0)} held-out "
                f"({self.format}, {self.status})")


def exports_dir(data_dir: str | Path) -> Path:
    """Where the app writes its exports (the Export tab) and where the Train tab lists them."""
    return Path(data_dir) / "exports"


def list_exports(root: str | Path, status: str | None = None) -> list[ExportFolder]:
    """The export folders directly under `root` (those with a readable manifest.json), newest first."""
    root = Path(root)
    found = []
    for folder in root.iterdir() if root.is_dir() else ():
        try:
            manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # a zip, a half-deleted folder, something else: not an export
        if status is None or manifest.get("status") == status:
            found.append(ExportFolder(folder.name, folder.resolve(), manifest.get("format", "?"),
                                      manifest.get("status", "?"), manifest.get("created_at", ""),
                                      dict(manifest.get("counts", {}))))
    return sorted(found, key=lambda e: (e.created_at, e.name), reverse=True)


def hub_ignore(format: str) -> tuple[str, ...]:
    """Files of an export not worth uploading to the Hub: the parquet already embeds its images."""
    return ("images/*",) if format == "humancaptionhq" else ()


def _chunks(conn: Connection, query, size: int):
    """Result rows in lists of `size`, straight from the DBAPI cursor.

    One SELECT is one consistent snapshot. Plain tuples from the driver skip SQLAlchemy's
    per-row objects, which would otherwise cost a third of a large export's time.
    """
    compiled = query.compile(dialect=conn.dialect)
    params = compiled.construct_params()
    args = [params[name] for name in compiled.positiontup] if compiled.positional else params
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.execute(str(compiled), args)
        while rows := cursor.fetchmany(size):
            yield rows
    finally:
        cursor.close()


def _check(format: str, status: str, split: float) -> None:
    if format not in FORMATS:
        raise InvalidInput(f"unknown export format {format!r}; use {' or '.join(FORMATS)}")
    if status not in STATUSES:
        raise InvalidInput(f"unknown status {status!r}; use one of {', '.join(STATUSES)}")
    if not 0.0 < split <= 1.0:
        raise InvalidInput(f"--split is the training fraction, in (0, 1]; got {split}")


def _is_replaceable(folder: Path) -> bool:
    return folder.is_dir() and (not any(folder.iterdir()) or (folder / "manifest.json").is_file())


class _Writer:
    """Accumulates rows per split and writes them in the chosen format."""

    def __init__(self, folder: Path, format: str, split: float, blur: bool, store: Store, result: ExportResult,
                 rescued: tuple[str, str] | None = None):
        from model.prompts import DEFAULT_PRESET, PRESETS

        self.folder, self.format, self.split, self.blur, self.rescued = folder, format, split, blur, rescued
        self.reviewers: set[str] = set()
        self.store, self.result = store, result
        self.default_prompt = PRESETS[DEFAULT_PRESET]
        self.parquet: dict[str, pq.ParquetWriter] = {}
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="export-writer")
        self.pending: Future | None = None
        self.llava: dict[str, list[dict]] = {s: [] for s in SPLITS}
        self.human_turns: dict[str | None, str] = {}

    def add(self, rows) -> None:
        (item_id, sha, path, url, licence, model_name, model_version, reviewer, edit_rate,
         prompt, final, fields_json, decided_at) = (list(col) for col in zip(*rows))
        limit = self.split * 2**32  # split_of, inlined: this runs once per exported row
        splits = ["train" if int(s[:8], 16) < limit else "test" for s in sha]
        if self.rescued is not None and self.rescued[0] in sha:
            splits[sha.index(self.rescued[0])] = self.rescued[1]
            self.result.rescued = 1
        images = [self._image(i, s, p) if p else None for i, s, p in zip(item_id, sha, path)]
        human = [self._human(p) for p in prompt]
        if self.format == "llava":
            kept = [image is not None for image in images]
            self._add_llava(item_id, sha, [i and i["path"] for i in images], human, final, splits)
        else:
            kept = [True] * len(images)
            for item, name in zip(item_id, splits):
                self.result.item_ids[name].append(item)
                self.result.counts[name] += 1
        self._note_provenance(kept, licence, model_name, model_version, reviewer, decided_at)
        if self.format == "llava":
            return
        columns = {
            "url": url, "image": images, "human_caption_hq": _turns(human, final),
            **_field_columns(fields_json),
            "item_id": item_id, "image_sha256": sha, "model_name": model_name,
            "model_version": model_version, "reviewer": reviewer, "edit_rate": edit_rate,
            "licence": licence, "split": splits,
        }
        table = pa.Table.from_pydict(columns, schema=SCHEMA)
        parts = {name: table.filter(pc.equal(table["split"], name)) for name in SPLITS}
        self._wait()  # at most one chunk in flight: memory stays at about two chunks
        # Parquet encoding and compression release the GIL: write this chunk on the writer
        # thread while the next one is read from the database.
        self.pending = self.pool.submit(self._write_parts, parts)

    def _note_provenance(self, kept, licence, model_name, model_version, reviewer, decided_at) -> None:
        """Tally what the dataset card reports, over the rows actually exported."""
        result = self.result
        rows = [r for r, keep in enumerate(kept) if keep]
        result.licences.update(card.effective_licence(licence[r], model_name[r]) for r in rows)
        result.models.update((model_name[r], model_version[r]) for r in rows)
        self.reviewers.update(reviewer[r] for r in rows if reviewer[r])
        result.reviewers = len(self.reviewers)
        dates = [str(decided_at[r])[:19] for r in rows if decided_at[r] is not None]
        if dates:
            old = result.review_dates or (None, None)
            result.review_dates = (min(filter(None, [old[0], *dates])), max(filter(None, [old[1], *dates])))

    def _write_parts(self, parts: dict[str, pa.Table]) -> None:
        for name, part in parts.items():
            if part.num_rows:
                self._parquet_writer(name).write_table(part)

    def _wait(self) -> None:
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.result()  # re-raises a failed write here

    def _human(self, prompt: str | None) -> str:
        """The human turn for a prompt; cached, since most items share a handful of prompts."""
        turn = self.human_turns.get(prompt)
        if turn is None:
            turn = self.human_turns[prompt] = "<image>\n" + (prompt or self.default_prompt)
        return turn

    def _add_llava(self, item_id, sha, images, human, final, splits) -> None:
        for item, digest, image, question, answer, name in zip(item_id, sha, images, human, final, splits):
            if image is None:
                self.result.skipped_without_image += 1
                continue
            self.result.item_ids[name].append(item)
            self.result.counts[name] += 1
            self.llava[name].append({
                "id": str(item), "image": image, "image_sha256": digest,
                "conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": answer}],
            })

    def _parquet_writer(self, name: str) -> pq.ParquetWriter:
        if name not in self.parquet:
            self.parquet[name] = pq.ParquetWriter(self.folder / f"{name}.parquet", SCHEMA)
        return self.parquet[name]

    def _image(self, item_id: int, sha: str, stored: str | None) -> dict | None:
        """Re-encode the stored image (metadata-free, faces blurred if asked) into images/;
        returns it as `datasets` stores an Image: {"bytes", "path"} (path relative to the export)."""
        if stored is None:
            return None
        from model.images import ImageError, image_to_bytes, load_image

        source = self.store.files.absolute(stored)
        try:
            img = load_image(source)
        except ImageError as exc:
            raise ExportFailed(f"item {item_id}: its stored image {source} is unusable: {exc}") from exc
        if self.blur:
            from annotate.faces import blur_faces

            img, faces = blur_faces(img)
            self.result.faces_blurred += faces
        fmt, ext = ("PNG", "png") if stored.endswith(".png") else ("JPEG", "jpg")
        relative = f"images/{sha}.{ext}"
        target = self.folder / relative
        target.parent.mkdir(exist_ok=True)
        data = image_to_bytes(img, fmt)
        target.write_bytes(data)
        fsync_file(target)
        self.result.images_written += 1
        return {"bytes": data if self.format == "humancaptionhq" else None, "path": relative}

    def close(self) -> None:
        try:
            self._wait()
        finally:
            self.pool.shutdown(wait=True)
        for name in SPLITS:  # a split with no rows gets no file (`datasets` cannot load one)
            if self.format == "llava" and self.llava[name]:
                path = self.folder / f"{name}.json"
                path.write_text(json.dumps(self.llava[name], ensure_ascii=False), encoding="utf-8")
            elif name in self.parquet:
                self.parquet[name].close()
                path = self.folder / f"{name}.parquet"
            else:
                continue
            fsync_file(path)
        if (self.folder / "images").is_dir():
            from annotate.atomic import fsync_dir

            fsync_dir(self.folder / "images")


def _field_columns(fields_json: list[str | None]) -> dict[str, list]:
    """The structured fields as four columns; only rows that have fields are parsed."""
    columns = {name: [None] * len(fields_json) for name in ("face", "body", "action", "background")}
    for row, text in enumerate(fields_json):
        if text:
            for name, value in json.loads(text).items():
                if name in columns:
                    columns[name][row] = value
    return columns


def _turns(human: list[str], final: list[str]) -> pa.ListArray:
    """[[{from: human, value}, {from: gpt, value}], ...] built column-wise (no per-row dicts)."""
    n = len(final)
    interleave = np.empty(2 * n, dtype=np.int64)  # human 0, gpt 0, human 1, gpt 1, ...
    interleave[0::2] = np.arange(n)
    interleave[1::2] = np.arange(n, 2 * n)
    values = pa.concat_arrays([pa.array(human, pa.string()), pa.array(final, pa.string())]).take(interleave)
    speakers = pa.array(["human", "gpt"], pa.string()).take(np.tile(np.array([0, 1]), n))
    structs = pa.StructArray.from_arrays([speakers, values], fields=list(TURN))
    offsets = pa.array(np.arange(0, 2 * n + 1, 2, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, structs, type=pa.list_(TURN))


def _write_manifest(folder: Path, result: ExportResult, status: str, split: float, blurred: bool) -> None:
    files = sorted(str(p.relative_to(folder)) for p in folder.glob("*.*"))
    manifest = {
        "format": result.format,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "status": status,
        "split": {"train_fraction": split, "rule": "int(image_sha256[:8], 16) / 2**32 < train_fraction -> train",
                  "rescued_for_test": result.rescued},
        "counts": {**result.counts, "total": sum(result.counts.values())},
        "files": files + (["images/"] if result.images_written else []),
        "images_written": result.images_written,
        "faces_blurred": result.faces_blurred,
        "blur_faces": blurred,
        "skipped_without_image": result.skipped_without_image,
        "item_ids": result.item_ids,
    }
    path = folder / "manifest.json"
    ids = manifest.pop("item_ids")  # on one line each: a long list would be one id per line
    text = json.dumps(manifest, indent=1)[:-2] + ',\n "item_ids": ' + json.dumps(ids, separators=(",", ":")) + "\n}\n"
    path.write_text(text, encoding="utf-8")
    fsync_file(path)
