"""Label Studio, both ways: push pending queue items as tasks, pull annotations back.

    result = push(store, "http://localhost:8080", token)   # project "HumanVLM captions"
    ...reviewers correct the captions in Label Studio...
    result = pull(store, "http://localhost:8080", token)   # corrections + approvals

Each task carries its queue item's id as `data.item_id`: that is the whole mapping, so no
table is needed here and re-pushing never duplicates a task. The model draft goes in as a
prediction (`model_version` = the draft's model version) that the reviewer edits in place.

The image travels inside the task as a `data:` URL of a downscaled (longest side
IMAGE_MAX_SIDE), metadata-free JPEG, rather than as an upload: the task is self-contained
(it works on any Label Studio edition and storage set-up, needs no second request per image
and no file-serving configuration, and cannot point at a file the server later cleans up),
and no EXIF/GPS metadata of a reviewer-facing photo ever leaves this machine. The price is
~50-250 KB per task in Label Studio's database and in task listings, which this module
pages through 100 tasks at a time. Items known only by URL are pushed with that URL.

Pulling goes through the queue's own operations (`submit_correction`, `approve`, `skip`,
`reassign`) with the Label Studio user's e-mail as the reviewer, so history, edit rates and
optimistic locking apply as for any reviewer. It is idempotent: an item whose latest
revision already holds the annotation's text by the same reviewer is left alone.
"""

from __future__ import annotations

import base64
import contextlib
import json
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from annotate.errors import ConflictError, InvalidInput, InvalidTransition, ItemNotFound
from annotate.records import FIELDS, Item

DEFAULT_PROJECT = "HumanVLM captions"
IMAGE_MAX_SIDE = 1024  # px, longest side of the pushed JPEG: enough to check clothing and faces
JPEG_QUALITY = 85
PAGE = 100  # tasks per import request and per listing page (requests stay a few MB)
TIMEOUT_S = 60.0

# Image + the full caption + HumanVLM's optional face / body / action / background parts.
# Each TextArea shows the prediction's text as an editable region (maxSubmissions="1").
LABEL_CONFIG = """<View>
  <Image name="image" value="$image" zoom="true" maxWidth="100%"/>
  <Header value="Caption of the whole image: correct the model's draft"/>
  <TextArea name="caption" toName="image" editable="true" maxSubmissions="1" rows="8"
            required="true" requiredMessage="The caption must not be empty"/>
  <Header value="Face (optional)" size="5"/>
  <TextArea name="face" toName="image" editable="true" maxSubmissions="1" rows="2"/>
  <Header value="Body and clothing (optional)" size="5"/>
  <TextArea name="body" toName="image" editable="true" maxSubmissions="1" rows="2"/>
  <Header value="Action (optional)" size="5"/>
  <TextArea name="action" toName="image" editable="true" maxSubmissions="1" rows="2"/>
  <Header value="Background (optional)" size="5"/>
  <TextArea name="background" toName="image" editable="true" maxSubmissions="1" rows="2"/>
</View>
"""


class LabelStudioError(Exception):
    """A Label Studio problem the user can act on."""

    user_facing = True


class ServerUnreachable(LabelStudioError):
    def __init__(self, url: str, why: object):
        super().__init__(f"cannot reach Label Studio at {url} ({why}); check --url and that "
                         "the server is running")


class BadToken(LabelStudioError):
    def __init__(self, url: str, missing: bool = False):
        what = "needs an API token" if missing else "refused the API token"
        super().__init__(f"Label Studio at {url} {what}; copy it from Account & Settings and "
                         "pass --token or set LABEL_STUDIO_API_KEY")


class ProjectNotFound(LabelStudioError):
    def __init__(self, title: str, url: str):
        super().__init__(f"no Label Studio project titled {title!r} at {url}; push first, or "
                         "pass the exact title with --project")


class ProjectMismatch(LabelStudioError):
    """The project exists but cannot be used (ambiguous title, foreign labeling config)."""


class ServerRefused(LabelStudioError):
    """Any other refusal by the server, with its own explanation."""


@dataclass(frozen=True)
class PushResult:
    project_id: int
    project_title: str
    project_created: bool
    pushed: int  # new tasks created by this push
    already_pushed: int  # pending items whose task was already in the project
    failed: tuple[tuple[int, str], ...] = ()  # (item id, why) for images that could not be read


@dataclass(frozen=True)
class PullResult:
    project_id: int
    approved: int = 0  # items corrected and approved from an annotation
    skipped: int = 0  # items skipped because their annotation was skipped in Label Studio
    unchanged: int = 0  # annotations already pulled before
    unknown: int = 0  # annotated tasks with no matching item (id and image) in this queue
    # (item id, why) left as they are: decided or held locally by someone else, or unusable
    conflicts: tuple[tuple[int, str], ...] = ()


# ---- connection, errors, project ---------------------------------------------------------

def connect(url: str, token: str):
    """A `LabelStudio` client whose token has been checked against the server."""
    from label_studio_sdk import LabelStudio  # lazy: the SDK takes ~1 s to import

    if not token:
        raise BadToken(url, missing=True)
    client = LabelStudio(base_url=url.rstrip("/"), api_key=token, timeout=TIMEOUT_S)
    with translated_errors(url):
        # No retries here: a refused connection or a bad token will not get better in a second,
        # and the SDK's retries with backoff would make every such mistake cost ~4 s.
        client.users.whoami(request_options={"max_retries": 0})
    return client


@contextlib.contextmanager
def translated_errors(url: str) -> Iterator[None]:
    """Turn transport and API errors into this module's named, user-facing errors."""
    import httpx
    from label_studio_sdk.core.api_error import ApiError

    try:
        yield
    except httpx.TransportError as exc:  # refused, DNS, timeout, bad scheme
        raise ServerUnreachable(url, exc.__class__.__name__ + (f": {exc}" if str(exc) else "")) from exc
    except ApiError as exc:
        if exc.status_code == 401:
            raise BadToken(url) from exc
        raise ServerRefused(f"Label Studio at {url} answered HTTP {exc.status_code}: "
                            f"{_detail(exc.body)}") from exc


def _detail(body: Any) -> str:
    if isinstance(body, dict):
        return str(body.get("validation_errors") or body.get("detail") or body)[:500]
    return str(body)[:500]


def find_project(client, title: str):
    """The project with exactly this title (the server filters by substring), or None."""
    matches = [p for p in client.projects.list(title=title) if p.title == title]
    if len(matches) > 1:
        ids = ", ".join(str(p.id) for p in matches)
        raise ProjectMismatch(f"{len(matches)} Label Studio projects are titled {title!r} "
                              f"(ids {ids}); rename all but one")
    return matches[0] if matches else None


def project_fields(label_config: str, title: str) -> tuple[str, ...]:
    """The structured fields the project's config has; refuses configs this module cannot fill."""
    try:
        root = ET.fromstring(label_config)
    except ET.ParseError as exc:
        raise ProjectMismatch(f"cannot read the labeling config of project {title!r}: {exc}") from exc
    images = {tag.get("name") for tag in root.iter("Image") if tag.get("value") == "$image"}
    areas = {tag.get("name") for tag in root.iter("TextArea") if tag.get("toName") in images}
    if "caption" not in areas:
        raise ProjectMismatch(
            f"Label Studio project {title!r} has no TextArea named 'caption' on an Image with "
            "value '$image'; use another --project name for a fresh captioning project"
        )
    return tuple(name for name in FIELDS if name in areas)


# ---- push --------------------------------------------------------------------------------

def push(store, url: str, token: str, project: str = DEFAULT_PROJECT, limit: int | None = None,
         progress: Callable[[int], None] | None = None) -> PushResult:
    """Create (or reuse by title) the project and add every pending item not yet in it.

    `limit` caps the number of new tasks; `progress(n)` is called after each batch of n.
    """
    if limit is not None and limit < 0:
        raise InvalidInput("--limit must be 0 or more")
    client = connect(url, token)
    with translated_errors(url):
        found, created = ensure_project(client, project)
        fields = project_fields(found.label_config, project)
        existing = set(_pushed_images(client, found.id))
        pushed, already, failed, batch = 0, 0, [], []
        for item in _pending_items(store):
            if (item.id, item.image.sha256) in existing:
                already += 1
                continue
            if limit is not None and pushed + len(batch) >= limit:
                break
            try:
                batch.append(build_task(item, fields))
            except ValueError as exc:  # model.images.ImageError: missing or unreadable file
                failed.append((item.id, str(exc)))
            if len(batch) == PAGE:
                pushed += _import(client, found.id, batch, progress)
        pushed += _import(client, found.id, batch, progress)
    return PushResult(found.id, project, created, pushed, already, tuple(failed))


def ensure_project(client, title: str):
    """(project, created): the project titled `title`, created with LABEL_CONFIG if missing."""
    found = find_project(client, title)
    if found is not None:
        return found, False
    created = client.projects.create(title=title, label_config=LABEL_CONFIG,
                                     description="Correct the model's captions of people.")
    return created, True


def _pending_items(store) -> Iterator[Item]:
    after = 0
    while page := store.list_items(status="pending", limit=PAGE, after_id=after):
        yield from page
        after = page[-1].id


def _pushed_images(client, project_id: int) -> Iterator[tuple[int, str]]:
    """(item id, image sha256) of every task in the project."""
    for task in client.tasks.list(project=project_id, page_size=PAGE):
        data = task.data or {}
        yield data.get("item_id"), data.get("image_sha256")


def _import(client, project_id: int, batch: list[dict], progress) -> int:
    """Send the batch as one import request and empty it; returns how many tasks were sent."""
    if not batch:
        return 0
    client.projects.import_tasks(id=project_id, request=batch)
    sent = len(batch)
    batch.clear()
    if progress:
        progress(sent)
    return sent


def build_task(item: Item, fields: tuple[str, ...] = FIELDS) -> dict:
    """The Label Studio task for a queue item: image, item id, and the draft as a prediction."""
    draft = item.draft
    return {
        # The image hash guards against a task pushed from another queue whose item ids
        # overlap ours: its annotation must never land on a different photo.
        "data": {"image": image_source(item), "item_id": item.id, "image_sha256": item.image.sha256},
        "predictions": [{
            "model_version": draft.model_version,
            "result": textarea_results({"caption": draft.caption}, fields),
        }],
    }


def image_source(item: Item) -> str:
    """A data: URL of a small metadata-free JPEG of the stored file, or the item's URL."""
    from model.images import ImageLimits, image_to_bytes, load_image

    if item.image.path is not None:
        img = load_image(item.image.path, ImageLimits(max_side=IMAGE_MAX_SIDE))
        jpeg = image_to_bytes(img, "JPEG", quality=JPEG_QUALITY)
        return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
    if item.image.url:
        return item.image.url
    raise ValueError(f"item {item.id} has neither a stored image nor an image URL")


def textarea_results(texts: dict[str, str], fields: tuple[str, ...] = FIELDS) -> list[dict]:
    """Label Studio results for the caption and any structured fields the project has."""
    names = ("caption", *fields)
    return [
        {"from_name": name, "to_name": "image", "type": "textarea", "value": {"text": [text]}}
        for name, text in texts.items() if name in names and text and text.strip()
    ]


# ---- pull --------------------------------------------------------------------------------

# Tasks with at least one submitted or skipped annotation (the server ignores `only_annotated`).
_ANNOTATED = {"filters": {"conjunction": "or", "items": [
    {"filter": "filter:tasks:total_annotations", "operator": "greater", "type": "Number", "value": 0},
    {"filter": "filter:tasks:cancelled_annotations", "operator": "greater", "type": "Number", "value": 0},
]}}


@dataclass(frozen=True)
class Annotation:
    """The latest annotation of a task, reduced to what the queue needs."""

    item_id: int
    image_sha256: str | None
    reviewer: str
    cancelled: bool
    caption: str
    fields: dict[str, str]


def pull(store, url: str, token: str, project: str = DEFAULT_PROJECT) -> PullResult:
    """Bring every task's latest annotation back as an approved correction (or a skip).

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
            annotation = read_annotation(task, reviewers)
            try:
                counts[apply_annotation(store, annotation) if annotation else "unknown"] += 1
            except ItemNotFound:
                counts["unknown"] += 1
            except (ConflictError, InvalidTransition, InvalidInput) as exc:
                conflicts.append((annotation.item_id, str(exc)))
    return PullResult(found.id, counts["approved"], counts["skipped"], counts["unchanged"],
                      counts["unknown"], tuple(conflicts))


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


def read_annotation(task, reviewers: _Reviewers) -> Annotation | None:
    """The task's most recent annotation (several annotators: the latest wins), or None when
    the task was not pushed from this queue or has no annotation."""
    item_id = (task.data or {}).get("item_id")
    annotations = [a for a in (task.annotations or []) if _get(a, "completed_by") is not None]
    if not isinstance(item_id, int) or not annotations:
        return None
    latest = max(annotations, key=lambda a: (str(_get(a, "updated_at")), _get(a, "id")))
    texts = _texts(_get(latest, "result") or [])
    return Annotation(
        item_id=item_id,
        image_sha256=(task.data or {}).get("image_sha256"),
        reviewer=reviewers.name(_user_id(_get(latest, "completed_by"))),
        cancelled=bool(_get(latest, "was_cancelled")),
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
