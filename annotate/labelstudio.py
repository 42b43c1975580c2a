"""Label Studio, both ways: push pending queue items as tasks, pull annotations back.

    result = push(store, "http://localhost:8080", token)   # project "HumanVLM captions"
    ...reviewers correct the captions in Label Studio...
    result = pull(store, "http://localhost:8080", token)   # annotate.labelstudio_pull

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

Pulling (annotate/labelstudio_pull.py) goes through the queue's own operations, with the Label
Studio user's e-mail as the reviewer.

Overlap: an item queued with `overlap` N needs N independent reviews (annotate/reviews.py), so
its task's own `overlap` is N. That is Label Studio's per-task count of distinct annotators: the
field its project setting "Annotations per task" (`maximum_annotations`) writes into every task,
and the one it reads to decide when a task is finished and whom to serve it to next. It is set
per task because one queue mixes overlap-1 and overlap-N items in one project, where a
project-wide N would ask N annotators for every task; a new project gets the overlap most
pending items need as its setting, so only the other tasks take a request each. Label Studio
rewrites the tasks' overlap whenever that setting changes; the next push puts them back.
Gold items are never pushed: their draft is the reference caption, which reviewers must not see.
"""

from __future__ import annotations

import base64
import contextlib
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from annotate.errors import InvalidInput
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
    gold: int = 0  # pending gold items, kept back: their draft is the reference caption


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

    A task asks for as many annotators as its item needs reviews (set again on tasks already
    there); gold items are kept back. `limit` caps the number of new tasks; `progress(n)` is
    called after each batch of n.
    """
    if limit is not None and limit < 0:
        raise InvalidInput("--limit must be 0 or more")
    client = connect(url, token)
    with translated_errors(url):
        found = find_project(client, project)
        created = found is None
        if created:
            found = create_project(client, project, _usual_overlap(store))
        fields = project_fields(found.label_config, project)
        existing = _pushed_tasks(client, found.id)
        imported_overlap = found.maximum_annotations or 1  # what Label Studio gives new tasks
        pushed, already, gold, failed, batch = 0, 0, 0, [], []
        for item in _pending_items(store):
            if item.gold:
                gold += 1
                continue
            task = existing.get((item.id, item.image.sha256))
            if task is not None:
                already += 1
                if task.overlap != item.overlap:
                    ask_for_reviews(client, task.id, item.overlap, task.total_annotations or 0)
                continue
            if limit is not None and pushed + len(batch) >= limit:
                break
            try:
                batch.append((build_task(item, fields), item.overlap))
            except ValueError as exc:  # model.images.ImageError: missing or unreadable file
                failed.append((item.id, str(exc)))
            if len(batch) == PAGE:
                pushed += _import(client, found.id, batch, imported_overlap, progress)
        pushed += _import(client, found.id, batch, imported_overlap, progress)
    return PushResult(found.id, project, created, pushed, already, tuple(failed), gold)


def create_project(client, title: str, annotations_per_task: int = 1):
    """A project titled `title` with LABEL_CONFIG whose new tasks ask `annotations_per_task`
    annotators (maximum_annotations)."""
    return client.projects.create(title=title, label_config=LABEL_CONFIG, maximum_annotations=annotations_per_task,
                                  description="Correct the model's captions of people.")


def _usual_overlap(store) -> int:
    """The overlap most pending items need: other tasks take a request each (~0.2 s on 2 cores)."""
    overlaps = Counter(item.overlap for item in _pending_items(store) if not item.gold)
    return overlaps.most_common(1)[0][0] if overlaps else 1


def _pending_items(store) -> Iterator[Item]:
    after = 0
    while page := store.list_items(status="pending", limit=PAGE, after_id=after):
        yield from page
        after = page[-1].id


def _pushed_tasks(client, project_id: int) -> dict[tuple[int, str], Any]:
    """Every task in the project by (item id, image sha256)."""
    tasks = {}
    for task in client.tasks.list(project=project_id, page_size=PAGE):
        data = task.data or {}
        tasks[data.get("item_id"), data.get("image_sha256")] = task
    return tasks


def ask_for_reviews(client, task_id: int, overlap: int, annotations: int = 0) -> None:
    """Make Label Studio ask `overlap` distinct annotators for the task; `is_labeled` follows the
    rule Label Studio applies itself after a settings change (annotations >= overlap)."""
    client.tasks.update(id=str(task_id), overlap=overlap, is_labeled=annotations >= overlap)


def _import(client, project_id: int, batch: list[tuple[dict, int]], imported_overlap: int, progress) -> int:
    """Send the batch of (task, overlap) as one import request, set the overlap of tasks that
    need another than Label Studio gave them, and empty the batch; returns how many were sent."""
    if not batch:
        return 0
    created = client.projects.import_tasks(id=project_id, request=[task for task, _ in batch],
                                           return_task_ids=True)
    for task_id, (_, overlap) in zip(created.task_ids, batch):  # in the order sent
        if overlap != imported_overlap:
            ask_for_reviews(client, task_id, overlap)
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
