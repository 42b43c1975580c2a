"""Roles through the real HTTP API (`gradio_client`) against a served app, in each mode.

Every privileged endpoint is refused for an anonymous caller and for the wrong role, with the
queue, the job table and the serving model unchanged; the right role gets through, and the
audit log records who did what.
"""

from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from tests.conftest import ASTRONAUT, running_app
from tests.train_support import approve_shapes, disagreeing_reviews

USERS = [("alice", "alice-pw"), ("bob", "bob-pw"), ("carol", "carol-pw")]
PRIVILEGED = [  # (endpoint, kwargs, role it needs)
    ("/review_claim", {}, "reviewer"),
    ("/review_approve", {"item_id": 1, "caption": "A phishing link http://evil.example"}, "reviewer"),
    ("/review_reject", {"item_id": 1, "reason": "spam"}, "reviewer"),
    ("/queue_stats", {}, "reviewer"),
    ("/export", {}, "admin"),
    ("/train_start", {"base": "demo", "max_steps": 1}, "admin"),
    ("/train_cancel", {}, "admin"),
    ("/train_jobs", {}, "admin"),
    ("/train_exports", {}, "admin"),
    ("/versions", {}, "admin"),
    ("/use_version", {"name": "base"}, "admin"),
    ("/audit_log", {}, "admin"),
]


@pytest.fixture()
def services(tmp_path):
    from annotate.store import Store
    from model.loader import LoadConfig
    from model.slot import ModelSlot
    from train.jobs import JobRunner, RunnerConfig

    store = Store(f"sqlite:///{tmp_path / 'studio.db'}", tmp_path / "data")
    approve_shapes(store, 3, seed=1)
    _enqueue_drafts(store, 2, seed=2)
    runner = JobRunner(RunnerConfig(db_url=store.url, models_dir=tmp_path / "models"))
    slot = ModelSlot(LoadConfig(model="demo"))
    yield store, runner, slot
    runner.close()
    store.close()


def _enqueue_drafts(store, count: int, seed: int) -> None:
    from annotate.records import Draft
    from tests.synthetic_shapes import samples

    for sample in samples(count, seed):
        store.enqueue(sample.image, Draft("demo", "demo-v2", caption="A model draft."))


def _state(store, runner, slot):
    """What a refused call must leave as it was."""
    items = [(i.id, i.status, i.caption, i.claimed_by, i.version) for i in store.list_items(limit=100)]
    return items, [j.id for j in runner.list(limit=100)], slot.config


def _public(admins="alice", reviewers=None, auth=True, **kw):
    from app.policy import resolve_access

    return resolve_access("127.0.0.1", public=True, auth=auth, admins=admins, reviewers=reviewers, env={}, **kw)


@pytest.fixture()
def public_app(services):
    store, runner, slot = services
    with running_app(slot=slot, store=store, jobs=runner, auth=USERS, access=_public()) as url:
        yield url, store, runner, slot


def test_anonymous_and_reviewer_are_refused_every_privileged_endpoint_and_nothing_changes(public_app):
    url, store, runner, slot = public_app
    before = _state(store, runner, slot)
    # An anonymous visitor: the app requires log-in (--auth), so the API refuses everything.
    with pytest.raises(Exception):
        Client(url, verbose=False).predict(api_name="/review_claim")
    bob = Client(url, auth=("bob", "bob-pw"), verbose=False)  # a reviewer: logged in, not an admin
    for endpoint, kwargs, role in PRIVILEGED:
        if role != "admin":
            continue
        with pytest.raises(AppError, match="needs the admin role"):
            bob.predict(**kwargs, api_name=endpoint)
    assert _state(store, runner, slot) == before
    refused = [e for e in store.audit.entries() if not e.allowed]
    assert {e.action for e in refused} == {"export", "train", "cancel", "versions", "use_version", "audit"}
    assert {e.actor for e in refused} == {"bob"}


def test_reviewer_reviews_as_the_logged_in_user_and_admin_does_the_rest(public_app):
    url, store, runner, slot = public_app
    bob = Client(url, auth=("bob", "bob-pw"), verbose=False)
    item = bob.predict(api_name="/review_claim")
    assert item["claimed_by"] == "bob" and item["status"] == "in_review" and item["caption"]
    assert Path(item["image"]).is_file()  # the photo, downloaded by the client
    done = bob.predict(item_id=item["id"], caption="A person, corrected by bob.", api_name="/review_approve")
    assert done["status"] == "approved" and done["caption"] == "A person, corrected by bob."
    assert store.get_item(item["id"]).decided_by == "bob"  # never a name passed as a parameter

    alice = Client(url, auth=("alice", "alice-pw"), verbose=False)
    versions = alice.predict(api_name="/versions")
    assert versions[0]["name"] == "base"
    serving = alice.predict(name="base", api_name="/use_version")
    assert serving["is_demo"] is True
    archive = alice.predict(api_name="/export")
    assert Path(archive).suffix == ".zip" and Path(archive).stat().st_size > 0
    log = alice.predict(api_name="/audit_log")
    assert [(e["actor"], e["action"]) for e in log[:3]] == [("alice", "export"), ("alice", "use_version"),
                                                            ("bob", "approve")]


def test_api_lists_only_named_endpoints_with_named_parameters(public_app):
    url, *_ = public_app
    api = Client(url, auth=("alice", "alice-pw"), verbose=False).view_api(print_info=False, return_format="dict")
    names = set(api["named_endpoints"])
    assert {"/caption", "/chat", "/review_claim", "/review_approve", "/review_reject", "/export", "/train_start",
            "/train_cancel", "/versions", "/use_version"} <= names
    assert not api["unnamed_endpoints"]
    assert not any(n.startswith("/lambda") or n.startswith("/ui_") for n in names)
    for endpoint in api["named_endpoints"].values():
        for param in endpoint["parameters"]:
            assert not param["parameter_name"].startswith("param_"), param
    caption = api["named_endpoints"]["/caption"]["parameters"]
    assert [p["parameter_name"] for p in caption][:3] == ["image", "preset", "prompt"]


def test_public_mode_without_login_anonymous_visitor_captions_but_cannot_review(services):
    """A public Space with no --auth: anonymous visitors caption; no admin is named yet."""
    store, runner, slot = services
    before = _state(store, runner, slot)
    with running_app(slot=slot, store=store, jobs=runner, access=_public(admins="", auth=False)) as url:
        c = Client(url, verbose=False)
        caption = c.predict(handle_file(str(ASTRONAUT)), "brief", "", 8, api_name="/caption")
        assert isinstance(caption, str) and caption
        for endpoint, kwargs, role in PRIVILEGED:
            with pytest.raises(AppError, match=f"needs the {role} role"):
                c.predict(**kwargs, api_name=endpoint)
        with pytest.raises(AppError, match="no admin is configured: start the app with --admins"):
            c.predict(api_name="/export")
        with pytest.raises(AppError, match="needs the reviewer role"):  # the UI's own event, called directly
            c.predict("someone", api_name="/ui_claim_next")
    assert _state(store, runner, slot) == before
    assert store.audit.entries() == []  # anonymous refusals are logged to the console only


def test_local_mode_one_person_holds_every_role(services):
    store, runner, slot = services
    with running_app(slot=slot, store=store, jobs=runner) as url:
        c = Client(url, verbose=False)
        item = c.predict(api_name="/review_claim")
        assert item["claimed_by"] == "local"
        rejected = c.predict(item_id=item["id"], reason="not a photo of a person", api_name="/review_reject")
        assert rejected["status"] == "rejected"
        assert c.predict(api_name="/versions")[0]["name"] == "base"
    assert [e.action for e in store.audit.entries()] == ["reject"]


def test_api_file_parameter_must_be_an_upload_not_a_server_path(services):
    store, runner, slot = services
    with running_app(slot=slot, store=store, jobs=runner) as url:
        payload = {"data": [{"path": str(Path(store.url.split("///")[1])), "meta": {"_type": "gradio.FileData"}}]}
        r = httpx.post(f"{url}gradio_api/call/caption", json=payload, timeout=30)
        event = r.json()["event_id"]
        body = httpx.get(f"{url}gradio_api/call/caption/{event}", timeout=60).text
        assert "error" in body
        assert not slot.loaded  # refused before the model was even loaded


def test_audit_command_prints_the_log(services, tmp_path):
    import json

    from tests.conftest import run_app

    store, runner, slot = services
    with running_app(slot=slot, store=store, jobs=runner, auth=USERS, access=_public()) as url:
        bob = Client(url, auth=("bob", "bob-pw"), verbose=False)
        with pytest.raises(AppError):
            bob.predict(api_name="/export")
        item = bob.predict(api_name="/review_claim")
        bob.predict(item_id=item["id"], reason="blurry `http://x`", api_name="/review_reject")
    done = run_app("audit", "--json", "--db", store.url, "--data-dir", str(store.data_dir))
    assert done.returncode == 0, done.stderr
    entries = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(e["actor"], e["action"], e["allowed"]) for e in entries] == [("bob", "reject", True),
                                                                          ("bob", "export", False)]
    assert entries[0]["detail"] == "blurry `http://x`" and entries[0]["target"] == f"item {item['id']}"
    text = run_app("audit", "--db", store.url, "--data-dir", str(store.data_dir)).stdout
    assert "bob (reviewer)  export" in text and "REFUSED" in text


def test_on_zerogpu_training_is_refused_with_the_commands_to_run_elsewhere(services, monkeypatch):
    import app.api  # noqa: F401  (decorated at import, off ZeroGPU: real ZeroGPU needs its device API)

    store, runner, slot = services
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")  # what the Train tab and train_start look at
    with running_app(slot=slot, store=store, jobs=runner) as url:
        with pytest.raises(AppError, match="Training cannot run on ZeroGPU"):
            Client(url, verbose=False).predict(base="demo", max_steps=1, api_name="/train_start")
        page = httpx.get(f"{url}config").json()
    assert runner.list(limit=10) == []
    notes = [c["props"].get("value") for c in page["components"] if c["props"].get("elem_id") == "train-zerogpu"]
    assert notes and "python app.py train --data" in notes[0]


def test_an_overlap_item_is_approved_through_the_api_by_two_reviewers(tmp_path):
    from annotate.records import Draft
    from annotate.store import Store

    with Store(f"sqlite:///{tmp_path / 'q.db'}", tmp_path / "data") as store:
        store.enqueue(ASTRONAUT, Draft("demo", "v1", caption="A woman."), overlap=2)
        with running_app(store=store, auth=USERS, access=_public()) as url:
            for user, caption in (("bob", "A woman in an orange suit."), ("carol", "A smiling woman in orange.")):
                client = Client(url, auth=(user, f"{user}-pw"), verbose=False)
                item = client.predict(api_name="/review_claim")
                done = client.predict(item_id=item["id"], caption=caption, api_name="/review_approve")
                assert done["id"] == item["id"]
            assert Client(url, auth=("bob", "bob-pw"), verbose=False).predict(api_name="/review_claim") is None
        final = store.get_item(1)
        assert final.status == "approved" and {r.reviewer for r in store.reviews(1)} == {"bob", "carol"}


def test_admins_adjudicate_disagreements_through_the_api(tmp_path):
    from annotate.store import Store

    with Store(f"sqlite:///{tmp_path / 'q.db'}", tmp_path / "data") as store:
        disagreeing_reviews(store, ASTRONAUT)
        with running_app(store=store, auth=USERS, access=_public()) as url:
            bob = Client(url, auth=("bob", "bob-pw"), verbose=False)
            with pytest.raises(AppError, match="Adjudicating reviews needs the admin role"):
                bob.predict(api_name="/disagreements")
            alice = Client(url, auth=("alice", "alice-pw"), verbose=False)
            [found] = alice.predict(api_name="/disagreements")
            assert found["agreement"] < 0.5 and {r["reviewer"] for r in found["reviews"]} == {"bob", "carol"}
            done = alice.predict(item_id=found["id"], pick="bob", api_name="/adjudicate")
            assert done["caption"] == "A woman in an orange flight suit." and done["status"] == "approved"
            assert alice.predict(api_name="/disagreements") == []
        assert store.get_item(1).final_source == "pick:bob"
        assert [e.action for e in store.audit.entries() if e.allowed] == ["adjudicate"]
