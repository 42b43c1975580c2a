"""Label Studio push/pull against a real Label Studio server (see tests/labelstudio_server.py).

One server serves the whole session; each test works in its own project, created by push.
Annotations are made through the SDK exactly as the Label Studio UI makes them.
"""

from __future__ import annotations

import base64
import io
import subprocess
import sys
import uuid

import pytest
from PIL import Image

from annotate.labelstudio import (
    IMAGE_MAX_SIDE,
    BadToken,
    ProjectNotFound,
    ServerUnreachable,
    pull,
    push,
    textarea_results,
)
from annotate.records import Draft
from annotate.store import Store
from tests.labelstudio_server import free_port

pytestmark = pytest.mark.labelstudio

ASTRONAUT = "static/examples/astronaut.png"


@pytest.fixture
def store(tmp_path):
    with Store(url=f"sqlite:///{tmp_path / 'queue.db'}", data_dir=tmp_path / "data") as store:
        yield store


@pytest.fixture
def ls(labelstudio_server):
    from label_studio_sdk import LabelStudio

    url, token = labelstudio_server
    return LabelStudio(base_url=url, api_key=token)


@pytest.fixture
def project() -> str:
    return f"Captions {uuid.uuid4().hex[:8]}"


def enqueue_examples(store: Store, repo_root) -> list[int]:
    """The astronaut photo and three small generated images, with drafts of two model versions."""
    ids = [store.enqueue(repo_root / ASTRONAUT,
                         Draft("humanvlm", "hv-1.0", caption="A woman in an orange space suit."))]
    for n, colour in enumerate([(200, 40, 40), (40, 200, 40), (40, 40, 200)]):
        image = Image.new("RGB", (96 + n, 64), colour)
        ids.append(store.enqueue(image, Draft("demo", "demo-0.1", caption=f"A plain square {n}.")))
    return ids


def tasks_by_item(ls, project_id: int) -> dict[int, object]:
    tasks = list(ls.tasks.list(project=project_id, fields="all"))
    by_item = {task.data["item_id"]: task for task in tasks}
    assert len(by_item) == len(tasks), "one task per item"
    return by_item


def history_snapshot(store: Store, ids: list[int]) -> list[tuple]:
    items = [store.get_item(i) for i in ids]
    return [(i.status, i.version, i.caption, i.fields, i.decided_by, len(i.history), len(i.actions))
            for i in items]


def test_round_trip(labelstudio_server, ls, store, project, request):
    url, token = labelstudio_server
    ids = enqueue_examples(store, request.config.rootpath)
    drafts = {i: store.get_item(i).draft for i in ids}

    pushed = push(store, url, token, project=project)
    assert (pushed.project_created, pushed.pushed, pushed.already_pushed, pushed.failed) == (True, 4, 0, ())

    # On the server: one task per item, the draft as a prediction with its model version, and
    # the image as a small metadata-free JPEG inside the task.
    tasks = tasks_by_item(ls, pushed.project_id)
    assert sorted(tasks) == sorted(ids)
    for item_id, task in tasks.items():
        (prediction,) = task.predictions
        assert prediction.model_version == drafts[item_id].model_version
        assert prediction.result == textarea_results({"caption": drafts[item_id].caption})
        prefix, b64 = task.data["image"].split(",", 1)
        assert prefix == "data:image/jpeg;base64"
        with Image.open(io.BytesIO(base64.b64decode(b64))) as image:
            assert image.format == "JPEG" and max(image.size) <= IMAGE_MAX_SIDE
            assert not image.getexif() and "exif" not in image.info
    with Image.open(io.BytesIO(base64.b64decode(tasks[ids[0]].data["image"].split(",", 1)[1]))) as img:
        assert img.size == (512, 512)  # the astronaut photo, already small: not upscaled

    # A reviewer works in Label Studio: corrects one (with a structured field), accepts one
    # as drafted, skips one, and leaves the last one alone.
    fixed = "Eileen Collins, smiling, in an orange NASA flight suit in front of a flag."
    ls.annotations.create(id=tasks[ids[0]].id, result=textarea_results(
        {"caption": fixed, "face": "a smiling woman with short brown hair"}))
    ls.annotations.create(id=tasks[ids[1]].id, result=textarea_results({"caption": drafts[ids[1]].caption}))
    ls.annotations.create(id=tasks[ids[2]].id, result=[], was_cancelled=True)
    reviewer = ls.users.whoami().email

    pulled = pull(store, url, token, project=project)
    assert (pulled.approved, pulled.skipped, pulled.unchanged, pulled.unknown, pulled.conflicts) == (2, 1, 0, 0, ())
    first, second, third, fourth = (store.get_item(i) for i in ids)
    assert (first.status, first.caption, first.fields) == (
        "approved", fixed, {"face": "a smiling woman with short brown hair"})
    assert first.decided_by == reviewer and first.history[-1].reviewer == reviewer
    assert first.edit_rate > 0.3
    assert (second.status, second.caption, second.edit_rate, second.decided_by) == (
        "approved", drafts[ids[1]].caption, 0.0, reviewer)
    assert (third.status, third.decided_by) == ("skipped", reviewer)
    assert fourth.status == "pending" and not fourth.history

    # Idempotent: pulling again changes nothing at all (no revision, no action, no version).
    before = history_snapshot(store, ids)
    again = pull(store, url, token, project=project)
    assert (again.approved, again.skipped, again.unchanged, again.conflicts) == (0, 0, 3, ())
    assert history_snapshot(store, ids) == before

    # Re-pushing adds nothing: the one pending item already has its task.
    repushed = push(store, url, token, project=project)
    assert (repushed.project_created, repushed.pushed, repushed.already_pushed) == (False, 0, 1)
    assert repushed.project_id == pushed.project_id
    assert sorted(tasks_by_item(ls, pushed.project_id)) == sorted(ids)


def test_new_items_limit_and_updated_annotation(labelstudio_server, ls, store, project, request):
    url, token = labelstudio_server
    ids = enqueue_examples(store, request.config.rootpath)
    assert push(store, url, token, project=project, limit=2).pushed == 2
    result = push(store, url, token, project=project)
    assert (result.pushed, result.already_pushed) == (2, 2)
    tasks = tasks_by_item(ls, result.project_id)
    assert sorted(tasks) == sorted(ids)

    annotation = ls.annotations.create(id=tasks[ids[0]].id, result=textarea_results({"caption": "First try."}))
    assert pull(store, url, token, project=project).approved == 1
    # The reviewer fixes their own annotation later: the next pull re-applies it, keeping history.
    ls.annotations.update(id=annotation.id, result=textarea_results({"caption": "Second try."}))
    assert pull(store, url, token, project=project).approved == 1
    item = store.get_item(ids[0])
    assert (item.status, item.caption) == ("approved", "Second try.")
    assert [r.caption for r in item.history] == ["First try.", "Second try."]


def test_nothing_local_or_foreign_is_overwritten(labelstudio_server, ls, store, project, request):
    url, token = labelstudio_server
    ids = enqueue_examples(store, request.config.rootpath)[:2]
    result = push(store, url, token, project=project)
    tasks = tasks_by_item(ls, result.project_id)
    # Meanwhile a reviewer of the local queue approves one item and holds the other.
    version = store.submit_correction(ids[0], "alice", "Alice's caption.", store.get_item(ids[0]).version)
    store.approve(ids[0], "alice", expected_version=version)
    assert store.claim_next("bob").id == ids[1]
    for item_id in ids:
        ls.annotations.create(id=tasks[item_id].id, result=textarea_results({"caption": "From LS."}))

    # A task pushed from another queue whose item id happens to be one of ours.
    (foreign,) = ls.projects.import_tasks(id=result.project_id, return_task_ids=True, request=[
        {"data": {"image": "https://example.org/x.jpg", "item_id": ids[0], "image_sha256": "f" * 64}}
    ]).task_ids
    ls.annotations.create(id=foreign, result=textarea_results({"caption": "Another photo."}))

    before = history_snapshot(store, ids)
    pulled = pull(store, url, token, project=project)
    assert (pulled.approved, pulled.unknown) == (0, 1)
    assert sorted(i for i, _ in pulled.conflicts) == sorted(ids)
    assert "alice" in dict(pulled.conflicts)[ids[0]] and "bob" in dict(pulled.conflicts)[ids[1]]
    assert history_snapshot(store, ids) == before


def test_named_errors(labelstudio_server, store, project):
    url, token = labelstudio_server
    with pytest.raises(ServerUnreachable) as unreachable:
        push(store, f"http://127.0.0.1:{free_port()}", token, project=project)
    with pytest.raises(BadToken) as bad_token:
        push(store, url, "0" * 40, project=project)
    with pytest.raises(ProjectNotFound) as missing:
        pull(store, url, token, project=project)
    for error in (unreachable.value, bad_token.value, missing.value):
        assert error.user_facing is True
    assert project in str(missing.value)


def test_cli_push_and_pull(labelstudio_server, tmp_path, monkeypatch, capsys, request):
    """`app.py labelstudio push/pull` end to end, with the token from the environment."""
    from app.cli import main

    url, token = labelstudio_server
    db, data = f"sqlite:///{tmp_path / 'cli.db'}", str(tmp_path / "data")
    with Store(url=db, data_dir=tmp_path / "data") as store:
        store.enqueue(request.config.rootpath / ASTRONAUT, Draft("demo", "demo-0.1", caption="A person."))
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", token)
    project = f"CLI {uuid.uuid4().hex[:8]}"
    assert main(["labelstudio", "push", "--url", url, "--project", project, "--db", db,
                 "--data-dir", data]) == 0
    assert "1 tasks pushed to created project" in capsys.readouterr().out
    assert main(["labelstudio", "pull", "--db", db, "--data-dir", data, "--url", url,
                 "--project", project]) == 0
    assert "0 approved" in capsys.readouterr().out
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "0" * 40)
    assert main(["labelstudio", "pull", "--url", url, "--project", project, "--db", db,
                 "--data-dir", data]) == 2
    assert capsys.readouterr().err.startswith("error: Label Studio at")


def test_cli_module_imports_nothing_heavy(request):
    code = ("import sys, annotate.labelstudio_cli, annotate.labelstudio; "
            "heavy = [m for m in ('label_studio_sdk', 'httpx', 'torch') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=request.config.rootpath)
