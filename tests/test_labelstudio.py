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
    push,
    textarea_results,
)
from annotate.labelstudio_pull import pull
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
    code = ("import sys, annotate.labelstudio_cli, annotate.labelstudio, annotate.labelstudio_pull; "
            "heavy = [m for m in ('label_studio_sdk', 'httpx', 'torch') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=request.config.rootpath)


# ---- team review: items that need several independent reviews ------------------------------

@pytest.fixture
def second_user(ls):
    """Another Label Studio user of the same organization (the test user is the first)."""
    return ls.users.create(username=f"second-{uuid.uuid4().hex[:8]}",
                           email=f"second-{uuid.uuid4().hex[:8]}@example.com")


def team_snapshot(store: Store, ids: list[int]) -> list[tuple]:
    return history_snapshot(store, ids) + [store.reviews(i) for i in ids]


def decided_in_app(tmp_path, image: Image.Image, reviews: list[tuple[str, str]]):
    """The same overlap-2 item reviewed in the app's own Review flow, in the same order."""
    with Store(url=f"sqlite:///{tmp_path / 'in-app.db'}", data_dir=tmp_path / "in-app") as other:
        item_id = other.enqueue(image, Draft("demo", "demo-0.1", caption="A plain square."), overlap=2)
        for who, caption in reviews:
            claimed = other.claim_next(who)
            other.approve(item_id, who, other.submit_correction(item_id, who, caption, claimed.version))
        return other.get_item(item_id)


def test_overlap_items_become_independent_reviews(labelstudio_server, ls, store, project, second_user,
                                                   tmp_path, capsys):
    """Overlap-2 items ask Label Studio for two annotators; each annotator's newest annotation
    comes back as their own review, deciding the item as the app's Review tab would."""
    from annotate.agreement import token_f1
    from annotate.blobs import url_identity
    from annotate.records import NewItem
    from app.cli import main

    url, token = labelstudio_server
    me = ls.users.whoami().email
    squares = [Image.new("RGB", (64 + n, 48), (40 * n, 90, 160)) for n in range(4)]
    draft = Draft("demo", "demo-0.1", caption="A plain square.")
    in_app, two, waits, single = (store.enqueue(image, draft, overlap=1 if n == 3 else 2)
                                  for n, image in enumerate(squares))
    gold_url = "https://example.org/gold.jpg"
    store.enqueue_many([NewItem(url_identity(gold_url), "url", Draft("ref", "gold", caption="The reference."),
                                url=gold_url)], gold=True)
    # The test user reviews one overlap item in the app before anything is pushed.
    claimed = store.claim_next(me)
    assert claimed.id == in_app
    store.approve(in_app, me, store.submit_correction(in_app, me, "Reviewed in the app.", claimed.version))

    pushed = push(store, url, token, project=project)
    assert (pushed.pushed, pushed.already_pushed, pushed.gold) == (4, 0, 1)
    tasks = tasks_by_item(ls, pushed.project_id)
    assert sorted(tasks) == [in_app, two, waits, single]  # the gold item's reference never leaves
    assert {i: t.overlap for i, t in tasks.items()} == {in_app: 2, two: 2, waits: 2, single: 1}
    assert ls.projects.get(id=pushed.project_id).maximum_annotations == 2  # what most items need

    def annotate(item_id, caption, user=None):
        extra = {} if user is None else {"completed_by": user.id}
        ls.annotations.create(id=tasks[item_id].id, result=textarea_results({"caption": caption}), **extra)

    annotate(two, "A first try at the square.")  # replaced by the same user's newer annotation
    annotate(two, "A blue square on a plain background.")
    annotate(two, "A square, blue, plain background, nothing else.", second_user)
    annotate(waits, "Only one reviewer so far.", second_user)
    annotate(in_app, "The same user again, in Label Studio.")  # must not count twice
    annotate(single, "The one review it needs.", second_user)

    pulled = pull(store, url, token, project=project)
    assert (pulled.reviews, pulled.decided, pulled.waiting, pulled.approved) == (3, 1, 2, 1)
    assert [i for i, _ in pulled.conflicts] == [in_app] and "already reviewed" in pulled.conflicts[0][1]
    mine, theirs = "A blue square on a plain background.", "A square, blue, plain background, nothing else."
    decided = store.get_item(two)
    expected = decided_in_app(tmp_path, squares[1], [(me, mine), (second_user.email, theirs)])
    assert (decided.status, decided.caption, decided.final_source, decided.edit_rate) == (
        expected.status, expected.caption, expected.final_source, expected.edit_rate)
    assert decided.status == "approved" and decided.final_source.startswith("medoid:")
    assert store.agreement()["by_item"] == {two: round(token_f1(mine, theirs), 4)}
    assert [(r.reviewer, r.status) for r in store.reviews(two)] == [(me, "approved"), (second_user.email, "approved")]
    assert [(r.reviewer, r.status) for r in store.reviews(waits)] == [(second_user.email, "approved")]
    assert store.get_item(waits).status == "pending" and [r.reviewer for r in store.reviews(in_app)] == [me]
    assert (store.get_item(single).status, store.get_item(single).decided_by) == ("approved", second_user.email)

    # Pulling again (through the CLI) records nothing, changes nothing, and says what is left out.
    before = team_snapshot(store, [in_app, two, waits, single])
    assert main(["labelstudio", "pull", "--url", url, "--token", token, "--project", project,
                 "--db", store.url, "--data-dir", str(store.data_dir)]) == 1  # PARTIAL: one left out
    out, err = capsys.readouterr()
    assert "0 reviews recorded (0 items decided, 2 waiting for more reviewers)" in out
    assert "1 left out" in out and f"item {in_app} left as it is" in err
    assert team_snapshot(store, [in_app, two, waits, single]) == before

    # A change of the project's "Annotations per task" rewrites the tasks' overlap; a push puts it back.
    ls.projects.update(id=pushed.project_id, maximum_annotations=3)
    assert push(store, url, token, project=project).already_pushed == 2
    tasks = tasks_by_item(ls, pushed.project_id)
    assert (tasks[waits].overlap, tasks[in_app].overlap, tasks[waits].is_labeled) == (2, 2, False)
