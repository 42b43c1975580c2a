"""Batch captioning into the review queue (`queue add`): resumable and batched.

Images already in the queue (same content hash) are skipped before any captioning, so
re-running the same command after an interruption only captions what is left.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path

from annotate.blobs import prepare_image, read_image_file, sha256_bytes
from annotate.errors import DuplicateImage
from annotate.records import Draft
from annotate.store import Store


@dataclass
class AddResult:
    queued: list[int] = field(default_factory=list)  # new item ids
    already_queued: int = 0
    failed: list[str] = field(default_factory=list)  # "path: reason"

    def summary(self) -> str:
        return (f"{len(self.queued)} queued, {self.already_queued} already in the queue, "
                f"{len(self.failed)} unreadable")


def caption_into_queue(store: Store, vlm, paths: list[Path], prompt: str, preset: str | None,
                       settings=None, batch_size: int = 4, licence: str | None = None,
                       consent: str | None = None,
                       progress: Callable[[int], None] | None = None, overlap: int = 1) -> AddResult:
    """Caption `paths` with `vlm` in batches and queue each caption as a draft, with the
    model's confidence in it (mean and minimum token log-probability)."""
    from model.images import ImageError, load_image

    if batch_size < 1:
        raise ValueError("--batch-size must be at least 1")
    result = AddResult()
    settings_json = asdict(settings) if is_dataclass(settings) else dict(settings or {})
    for start in range(0, len(paths), batch_size):
        batch = []
        for path in paths[start:start + batch_size]:
            try:
                data = read_image_file(path)
                # Resuming: hash the bytes first, so queued photos are not even decoded again.
                if store.item_for_image(sha256_bytes(data)) is not None:
                    result.already_queued += 1
                    continue
                prepared = prepare_image(data)
            except (ImageError, OSError) as exc:
                result.failed.append(f"{path}: {exc}")
                continue
            batch.append((path, prepared))
        if batch:
            scored = vlm.caption_batch_scored([load_image(p.data) for _, p in batch], prompt, settings)
            for (path, prepared), (caption, mean, low) in zip(batch, scored):
                if not caption.strip():
                    result.failed.append(f"{path}: the model returned an empty caption")
                    continue
                draft = Draft(vlm.info.name, vlm.info.version, caption, preset=preset,
                              prompt=prompt, settings=settings_json, confidence_mean=mean, confidence_min=low)
                _queue(store, prepared, draft, licence, consent, result, overlap)
        if progress:
            progress(len(paths[start:start + batch_size]))
    return result


def _queue(store: Store, prepared, draft: Draft, licence, consent, result: AddResult, overlap: int = 1) -> None:
    try:
        result.queued.append(store.enqueue(prepared, draft, licence=licence, consent=consent, overlap=overlap))
    except DuplicateImage:  # the same photo twice in one run, or another process was faster
        result.already_queued += 1
