"""Named failures of the review queue.

Every class carries `user_facing = True`: the CLI prints the message as one line and exits 2,
the UI shows it as a warning. Messages say what happened and what to do about it.
"""

from __future__ import annotations


class QueueError(Exception):
    """Base class for review-queue failures a user can act on."""

    user_facing = True


class ItemNotFound(QueueError):
    def __init__(self, item_id: int):
        super().__init__(f"no item {item_id} in the review queue")
        self.item_id = item_id


class DuplicateImage(QueueError):
    """The image (same content hash, or same URL for URL-only rows) is already queued."""

    def __init__(self, sha256: str, item_id: int):
        super().__init__(f"this image is already in the review queue as item {item_id}")
        self.sha256 = sha256
        self.item_id = item_id


class ConflictError(QueueError):
    """Someone else changed the item since the caller read it: never overwrite silently."""


class ClaimedByOther(ConflictError):
    def __init__(self, item_id: int, owner: str):
        super().__init__(
            f"item {item_id} is being reviewed by {owner}; claim another item or wait "
            "for the claim to be released or to expire"
        )
        self.item_id = item_id
        self.owner = owner


class InvalidTransition(QueueError):
    """The requested action does not apply to the item's current status."""


class NothingToUndo(QueueError):
    def __init__(self, reviewer: str):
        super().__init__(f"{reviewer} has no action left to undo")
        self.reviewer = reviewer


class InvalidInput(QueueError):
    """A caption, reviewer name, reason or image the queue cannot accept."""


class ImportFailed(QueueError):
    """An import file that cannot be read at all (single bad rows are reported, not raised)."""


class FetchRefused(QueueError):
    """An image URL the importer will not fetch (private address, too large, bad scheme)."""


class ExportFailed(QueueError):
    """An export that could not be written; the previous export is left as it was."""


class DatabaseUnavailable(QueueError):
    """The database URL cannot be opened (not a URL, driver missing, server down, not writable)."""


class CopyRefused(QueueError):
    """A database copy that would lose or merge data (target not empty, tables missing)."""
