"""Label Studio annotations back into the queue: `pull`.

    result = pull(store, "http://localhost:8080", token)   # project "HumanVLM captions"

Pulling goes through the queue's own operations (`submit_correction`, `approve`, `skip`,
`reassign`) with the Label Studio user's e-mail as the reviewer, so history, edit rates and
optimistic locking apply as for any reviewer. It is idempotent: an item whose latest
revision already holds the annotation's text by the same reviewer is left alone.

An item that needs several independent reviews (overlap N, annotate/reviews.py) takes each
distinct Label Studio user's newest annotation as that user's own review, through the Store's
team-review operations (`claim_item`, `submit_correction`, `approve`, `skip`), so it is decided
exactly as in the app: at the Nth review, approved with the medoid caption, or rejected by
majority. A review is keyed by its reviewer name: pulling again, or a user who has already
reviewed the item in the app, never counts twice.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass

from annotate.errors import ConflictError, InvalidInput, InvalidTransition, ItemNotFound
from annotate.labelstudio import DEFAULT_PROJECT, PAGE, ProjectNotFound, connect, find_project, translated_errors
from annotate.records import FIELDS, Item, Review


@dataclass(frozen=True)
class PullResult:
    project_id: int
    approved: int = 0  # items corrected and approved from an annotation
    skipped: int = 0  # items skipped because their annotation was skipped in Label Studio
    unchanged: int = 0  # annotations already pulled before
    unknown: int = 0  # annotated tasks with no matching item (id and image) in this queue
    # (item id, why) left as they are: decided or held locally by someone else, or unusable
    conflicts: tuple[tuple[int, str], ...] = ()
    # Items needing several independent reviews: one per Label Studio user who annotated.
    reviews: int = 0  # reviews recorded by this pull (skipped annotations included)
    decided: int = 0  # items whose last review this pull recorded: approved (medoid) or rejected
    waiting: int = 0  # annotated items still waiting for more reviewers


# Tasks with at least one submitted or skipped annotation (the server ignores `only_annotated`).
_ANNOTATED = {"filters": {"conjunction": "or", "items": [
    {"filter": "filter:tasks:total_annotations", "operator": "greater", "type": "Number", "value": 0},
    {"filter": "filter:tasks:cancelled_annotations", "operator": "greater", "type": "Number", "value": 0},
]}}


@dataclass(frozen=True)
class Annotation:
    """One Label Studio user's newest annotation of a task, reduced to what the queue needs."""

    item_id: int
    image_sha256: str | None
    reviewer: str
    cancelled: bool
    caption: str
    fields: dict[str, str]


def pull(store, url: str, token: str, project: str = DEFAULT_PROJECT) -> PullResult:
    """Bring every task's latest annotation back as an approved correction (or a skip); for an
    item that needs several reviews, each annotator's newest annotation as their own review.

    Items decided locally by someone else, or held by another reviewer right now, are left as
    they are and reported in `conflicts`; nothing is overwritten.
    """
    client = connect(url, token)
    counts, conflicts = Counter(), []
    with translated_errors(url):
        found = find_project(client, project)
        if found is None:
            raise ProjectNotFound(project, url)
        reviewers = _Reviewers(client)
        tasks = client.tasks.list(project=found.id, fields="all", page_size=PAGE,
                                  query=json.dumps(_ANNOTATED))
        for task in tasks:
            annotations = read_annotations(task, reviewers)
            item = _queue_item(store, annotations)
            if item is None:
                counts["unknown"] += 1
            elif item.overlap > 1 or item.gold:
                team_counts, left_out = pull_reviews(store, item, annotations)
                counts.update(team_counts)
                conflicts.extend(left_out)
            else:
                try:
                    counts[apply_annotation(store, annotations[-1])] += 1
                except (ConflictError, InvalidTransition, InvalidInput) as exc:
                    conflicts.append((item.id, str(exc)))
    return PullResult(found.id, counts["approved"], counts["skipped"], counts["unchanged"],
                      counts["unknown"], tuple(conflicts), counts["reviews"], counts["decided"],
                      counts["waiting"])


def _queue_item(store, annotations: list[Annotation]) -> Item | None:
    """The queue item the annotations belong to, or None for a task pushed from another queue
    (its item id is not ours, or holds another photo)."""
    if not annotations:
        return None
    try:
        item = store.get_item(annotations[0].item_id)
    except ItemNotFound:
        return None
    return item if item.image.sha256 == annotations[0].image_sha256 else None


class _Reviewers:
    """Label Studio user id -> reviewer name (e-mail, else username), looked up once each."""

    def __init__(self, client):
        self._client = client
        self._names: dict[int, str] = {}

    def name(self, user_id: int) -> str:
        if user_id not in self._names:
            user = self._client.users.get(id=user_id)
            self._names[user_id] = user.email or user.username or f"label-studio-user-{user_id}"
        return self._names[user_id]


def read_annotations(task, reviewers: _Reviewers) -> list[Annotation]:
    """Each annotator's newest annotation of the task, oldest first (so the last one is the
    task's latest); empty when the task was not pushed from this queue or has no annotation."""
    item_id = (task.data or {}).get("item_id")
    if not isinstance(item_id, int):
        return []
    newest = {}
    for found in sorted((a for a in (task.annotations or []) if _get(a, "completed_by") is not None), key=_recency):
        newest[_user_id(_get(found, "completed_by"))] = found  # a user's later annotation replaces theirs
    return [_annotation(item_id, task, reviewers.name(user), found)
            for user, found in sorted(newest.items(), key=lambda pair: _recency(pair[1]))]


def _recency(annotation) -> tuple[str, int]:
    return str(_get(annotation, "updated_at")), _get(annotation, "id")


def _annotation(item_id: int, task, reviewer: str, found) -> Annotation:
    texts = _texts(_get(found, "result") or [])
    return Annotation(
        item_id=item_id,
        image_sha256=(task.data or {}).get("image_sha256"),
        reviewer=reviewer,
        cancelled=bool(_get(found, "was_cancelled")),
        caption=texts.get("caption", ""),
        fields={name: texts[name] for name in FIELDS if texts.get(name)},
    )


def _get(obj, name: str):
    """Task listings give annotations as dicts; typed SDK models give attributes."""
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def _user_id(completed_by) -> int:
    return completed_by["id"] if isinstance(completed_by, dict) else int(completed_by)


def _texts(result: list) -> dict[str, str]:
    out = {}
    for region in result:
        if _get(region, "type") == "textarea":
            lines = (_get(region, "value") or {}).get("text") or []
            out[_get(region, "from_name")] = "\n".join(str(line) for line in lines).strip()
    return out


def apply_annotation(store, annotation: Annotation) -> str:
    """Apply one annotation through the queue; returns "approved", "skipped" or "unchanged".

    Raises ConflictError / InvalidTransition when the item is not ours to change.
    """
    item = store.get_item(annotation.item_id)
    if item.image.sha256 != annotation.image_sha256:  # pushed from another queue
        raise ItemNotFound(annotation.item_id)
    who = annotation.reviewer
    if annotation.cancelled:
        if item.status == "skipped" and item.decided_by == who:
            return "unchanged"
        store.skip(item.id, who, expected_version=_reopen(store, item, who))
        return "skipped"
    if not annotation.caption:
        raise InvalidInput(f"the Label Studio annotation of item {item.id} has no caption")
    same_text = _latest_revision_is(item, annotation)
    if item.status == "approved" and same_text and item.decided_by == who:
        return "unchanged"
    version = _reopen(store, item, who)
    if not same_text:
        version = store.submit_correction(item.id, who, annotation.caption, version,
                                          fields=annotation.fields)
    store.approve(item.id, who, expected_version=version)
    return "approved"


def _latest_revision_is(item: Item, annotation: Annotation) -> bool:
    if not item.history:
        return False
    latest = item.history[-1]
    return (latest.caption, latest.fields, latest.reviewer) == (
        annotation.caption, annotation.fields, annotation.reviewer)


def _reopen(store, item: Item, reviewer: str) -> int:
    """The version to act on: an item this reviewer decided before (from an earlier pull) goes
    back to pending first; a decision by anyone else is theirs to keep."""
    if item.status in ("approved", "rejected"):
        if item.decided_by != reviewer:
            raise ConflictError(f"item {item.id} was already {item.status} by {item.decided_by} "
                                "in this queue; left as it is")
        return store.reassign(item.id)
    return item.version


# ---- items with several independent reviews ----------------------------------------------

def pull_reviews(store, item: Item, annotations: list[Annotation]) -> tuple[Counter, list[tuple[int, str]]]:
    """Record each annotation (one per Label Studio user, oldest first) as its user's review.

    Counts "reviews" recorded and "unchanged" ones, then the item as "decided" (by this pull) or
    "waiting" (for more reviewers); returns the annotations left out as (item id, why).
    """
    counts, left_out = Counter(), []
    if item.gold:
        return counts, [(item.id, "a gold item: its task comes from an older push and its annotations are "
                                  "not pulled (gold items are never pushed)")]
    for annotation in annotations:
        try:
            counts[apply_review(store, item, annotation)] += 1
        except (ConflictError, InvalidTransition, InvalidInput) as exc:
            left_out.append((item.id, str(exc)))
    if item.status == "pending":
        counts["waiting" if store.get_item(item.id).status == "pending" else "decided"] += 1
    return counts, left_out


def apply_review(store, item: Item, annotation: Annotation) -> str:
    """One user's annotation as their independent review: "reviews" (recorded) or "unchanged".

    Raises ConflictError / InvalidTransition / InvalidInput when it cannot count: the user has
    reviewed the item already with another verdict or caption, all its reviewers are in, the
    item is decided, or the annotation has no caption.
    """
    who = annotation.reviewer
    own = next((r for r in store.reviews(item.id) if r.reviewer == who), None)
    if own is not None and own.status != "in_review":
        if _verdict_of(own) == _verdict(annotation):
            return "unchanged"
        raise ConflictError(f"{who} has already reviewed item {item.id} ({own.status}); another "
                            "Label Studio annotation by the same user does not count twice")
    if not annotation.cancelled and not annotation.caption:
        raise InvalidInput(f"the Label Studio annotation of item {item.id} by {who} has no caption")
    version = store.claim_item(item.id, who).version  # a claim they hold in the app is completed
    try:
        if annotation.cancelled:
            store.skip(item.id, who, expected_version=version)
            return "reviews"
        if annotation.caption != item.draft.caption or annotation.fields:
            version = store.submit_correction(item.id, who, annotation.caption, version, fields=annotation.fields)
        store.approve(item.id, who, expected_version=version)
        return "reviews"
    except (ConflictError, InvalidTransition, InvalidInput):
        if own is None:  # give back the claim this pull made, so the slot is free again
            store.release(item.id, who)
        raise


def _verdict_of(review: Review) -> tuple[str, str]:
    return review.status, review.caption if review.status == "approved" else ""


def _verdict(annotation: Annotation) -> tuple[str, str]:
    return ("skipped", "") if annotation.cancelled else ("approved", annotation.caption)
