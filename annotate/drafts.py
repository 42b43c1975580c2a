"""Model captions from the live demo become drafts in the review queue."""

from __future__ import annotations

from annotate.errors import DuplicateImage
from annotate.records import Draft


# Photos sent from the live demo are stored re-encoded, bounded: no visitor's upload reaches the
# data folder as it came (any size, any metadata).
STORED_MAX_SIDE = 2048  # pixels, longest side (HumanVLM sees 384 px; reviewers need detail)
STORED_JPEG_QUALITY = 92


def bounded_photo(path) -> bytes:
    """The uploaded photo re-encoded as a metadata-free JPEG, longest side at most 2,048 px."""
    from model.images import ImageLimits, image_to_bytes, load_image

    return image_to_bytes(load_image(path, ImageLimits(max_side=STORED_MAX_SIDE)), "JPEG", STORED_JPEG_QUALITY)


def draft_from_session(vlm, session: dict) -> Draft:
    """The model's own caption of the photo, with how it was produced (for provenance) and,
    when the session recorded it, the model's confidence: session["confidence"] = (mean, min)
    token log-probability of the caption (model/confidence.py)."""
    question, answer = session["turns"][0]
    mean, low = session.get("confidence") or (None, None)
    return Draft(model_name=vlm.info.name, model_version=vlm.info.version, caption=answer,
                 preset=session.get("preset"), prompt=question, settings=session.get("settings") or {},
                 confidence_mean=mean, confidence_min=low)


# Licences a sender may put on a photo they send to the review queue (recorded with the item;
# exports carry it).
PHOTO_LICENCES = ("cc-by-4.0", "cc0-1.0", "public-domain", "research-only")


def enqueue_caption(store, vlm, session: dict, caption: str, sender: str = "demo",
                    licence: str | None = None, consent: str | None = None) -> tuple[int, bool]:
    """Queue the session's photo with the model's caption as the draft.

    When the user edited the caption before sending it, the edit is saved as the item's
    first revision by `sender` and the item goes back to the queue for review: the draft
    stays what the model said, so edit rates measure the model. Returns (item id, was it
    already queued).
    """
    if not session.get("turns") or session["turns"][0][1] is None:
        raise ValueError("caption the photo first")
    draft = draft_from_session(vlm, session)
    try:
        item_id = store.enqueue(bounded_photo(session["photo"]), draft, licence=licence, consent=consent)
    except DuplicateImage as exc:
        return exc.item_id, True
    edited = (caption or "").strip()
    if edited and edited != draft.caption.strip():
        item = store.get_item(item_id)
        store.submit_correction(item_id, sender, edited, expected_version=item.version)
        store.release(item_id, sender)
    return item_id, False
