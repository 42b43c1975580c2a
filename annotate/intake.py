"""Getting items into the queue: the intake side of `annotate.store.Store`.

`QueueIntake` is a base class of `Store` (it needs the Store's write engine, image files and
clock). Images are identified by content hash, or by URL for images not fetched: queuing the
same photo twice raises `DuplicateImage` carrying the existing item's id; bulk imports count
duplicates instead. `overlap` and `gold` mark items for independent reviews and gold scoring.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from annotate import bulk
from annotate.blobs import prepare_image, url_identity
from annotate.checks import check_draft, check_overlap
from annotate.errors import DuplicateImage, InvalidInput
from annotate.records import BulkResult, Draft, NewItem
from annotate.views import IMAGES, ITEMS


class QueueIntake:
    """Enqueueing methods of `Store`."""

    def enqueue(self, image, draft: Draft, source_url: str | None = None,
                licence: str | None = None, consent: str | None = None, overlap: int = 1) -> int:
        """Queue a photo (PIL image, bytes or path) with its model draft; returns the item id."""
        check_draft(draft)
        check_overlap(overlap)
        prepared = prepare_image(image)
        self._raise_if_queued(prepared.sha256)
        path = self.files.store(prepared)
        row = NewItem(prepared.sha256, "content", draft, url=source_url, path=path,
                      width=prepared.width, height=prepared.height, licence=licence, consent=consent,
                      overlap=overlap)
        return self._insert_one(row)

    def enqueue_url(self, url: str, draft: Draft, licence: str | None = None,
                    consent: str | None = None, overlap: int = 1) -> int:
        """Queue an image known only by its URL (nothing is downloaded)."""
        check_draft(draft)
        check_overlap(overlap)
        if not url.lower().startswith(("http://", "https://")):
            raise InvalidInput(f"not an http(s) image URL: {url[:200]!r}")
        sha = url_identity(url)
        self._raise_if_queued(sha)
        return self._insert_one(NewItem(sha, "url", draft, url=url, licence=licence, consent=consent,
                                        overlap=overlap))

    def enqueue_many(self, rows: Sequence[NewItem], overlap: int | None = None, gold: bool = False) -> BulkResult:
        """Queue many already-hashed rows in one transaction; duplicates are counted, not raised.

        overlap: independent reviews per item (overrides the rows'); gold: the rows' captions are
        reference captions (gold items: mixed into claims at `gold_rate`, scored, never exported).
        """
        if overlap is not None:
            rows = [replace(row, overlap=check_overlap(overlap)) for row in rows]
        if gold:
            rows = [replace(row, gold_caption=row.draft.caption) for row in rows]
        with self._durable.begin() as conn:
            return bulk.insert_items(conn, rows, self._clock())

    def item_for_image(self, sha256: str) -> int | None:
        """The item holding this image hash (content or URL identity), if any."""
        query = select(ITEMS.c.id).join(IMAGES, ITEMS.c.image_id == IMAGES.c.id).where(IMAGES.c.sha256 == sha256)
        with self.engine.connect() as conn:
            return conn.scalar(query)

    def _raise_if_queued(self, sha256: str) -> None:
        existing = self.item_for_image(sha256)
        if existing is not None:
            raise DuplicateImage(sha256, existing)

    def _insert_one(self, row: NewItem) -> int:
        try:
            with self._durable.begin() as conn:
                result = bulk.insert_items(conn, [row], self._clock(), return_ids=True)
        except IntegrityError:  # a concurrent enqueue of the same image won the race
            self._raise_if_queued(row.sha256)
            raise
        if not result.item_ids:
            self._raise_if_queued(row.sha256)
        return result.item_ids[0]
