"""Managing trained versions (the Models tab and its API): a human name, a merged copy, deletion.

One tiny LoRA version of the demo model is trained once for the file (about 10 s); each test
works on its own copy of it, with the real job store, the real serving slot and the real HTTP API.
"""

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from tests.conftest import ASTRONAUT, running_app
from tests.synthetic_shapes import QUESTION
from tests.train_support import approve_shapes, export_to

USERS = [("alice", "alice-pw"), ("bob", "bob-pw")]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    from annotate.store import Store
    from train.options import TrainOptions
    from train.trainer import train

    root = tmp_path_factory.mktemp("trained")
    with Store(f"sqlite:///{root / 'studio.db'}", root / "data") as store:
        approve_shapes(store, 4, seed=5)
        data = export_to(store, root / "export", "llava", split=0.75)
    return Path(train(TrainOptions(data=str(data), base="demo", out=str(root / "v1"), max_steps=2, batch_size=2,
                                   warmup_ratio=0.0, evaluate=False, report_to="none")))


@pytest.fixture()
def services(trained, tmp_path):
    """The Models tab's services around two copies of the trained version (v1 older than v2)."""
    from annotate.store import Store
    from model.loader import LoadConfig
    from model.slot import ModelSlot
    from train.jobs import JobRunner, RunnerConfig

    models = tmp_path / "models"
    for name, created in (("v1", "2025-01-01T00:00:00+00:00"), ("v2", "2025-01-02T00:00:00+00:00")):
        shutil.copytree(trained, models / name)
        meta = json.loads((models / name / "studio_version.json").read_text())
        (models / name / "studio_version.json").write_text(json.dumps(meta | {"version": f"{name}-id",
                                                                              "created_at": created}))
    store = Store(f"sqlite:///{tmp_path / 'studio.db'}", tmp_path / "data")
    runner = JobRunner(RunnerConfig(db_url=store.url, models_dir=models))
    yield SimpleNamespace(slot=ModelSlot(LoadConfig(model="demo")), jobs=runner, store=store, models=models)
    runner.close()
    store.close()


def _admin():
    from app.policy import Policy

    return Policy().identify()  # local mode: the admin at the keyboard


def _tree(models: Path) -> dict:
    """Every file under the models folder with its content digest: what a refusal must leave."""
    import hashlib

    return {str(p.relative_to(models)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(models.rglob("*")) if p.is_file()}


def test_a_name_is_validated_stored_atomically_and_accepted_wherever_a_version_is(services):
    from app.models_tab import rename, refresh_models, version_by_name, versions_frame
    from train.push import find_version
    from train.versions import read_version

    admin, models = _admin(), services.models
    named = rename(services, admin, "v1", "  spring-fixes ")
    assert (named.name, named.version) == ("spring-fixes", "v1-id")  # the id never changes
    meta = json.loads((models / "v1" / "studio_version.json").read_text())
    assert meta["name"] == "spring-fixes" and meta["version"] == "v1-id" and "load" in meta
    assert [p.name for p in (models / "v1").iterdir() if p.name.endswith(".tmp")] == []
    assert version_by_name(services, "spring-fixes") == str(models / "v1")
    assert version_by_name(services, "v1-id") == version_by_name(services, "v1") == str(models / "v1")
    assert find_version("spring-fixes", str(models)).path == models / "v1"  # `python app.py push spring-fixes`
    assert versions_frame(services).set_index("version").loc["v1-id", "name"] == "spring-fixes"
    table, chosen, *_ = refresh_models(services, keep=str(models / "v1"))
    assert chosen.value == str(models / "v1")
    assert any(label.startswith("spring-fixes · v1-id") for label, _value in chosen.choices)

    for bad, reason in [("x" * 41, "at most 40"), ("<b>x</b>", "only letters"), ("../v2", "only letters"),
                        ("-dash", "only letters"), ("base", "reserved"), ("Spring-Fixes", "already names"),
                        ("v1", "already names"), ("v1-id", "already names")]:
        with pytest.raises(gr.Error, match=reason):
            rename(services, admin, "v2", bad)
    assert read_version(models / "v2").name is None
    assert rename(services, admin, "spring-fixes", "spring fixes 2").name == "spring fixes 2"  # renamed by its name
    assert rename(services, admin, "v1", "").name is None
    assert "name" not in json.loads((models / "v1" / "studio_version.json").read_text())
    assert [e.action for e in services.store.audit.entries()] == ["rename_version"] * 3


def test_merge_builds_a_new_whole_model_version_that_lists_serves_and_captions_like_the_adapter(services):
    import torch

    from app.models_tab import merge, rename, version_by_name
    from model.generate import GenerationSettings
    from model.images import load_image
    from model.loader import load_model
    from train.versions import config_for, list_versions

    admin, models = _admin(), services.models
    rename(services, admin, "v1", "spring-fixes")
    merged = merge(services, admin, "spring-fixes")
    assert merged.path == models / "v1-merged" and merged.merged and merged.merged_from == "v1-id"
    assert merged.name == "spring-fixes-merged" and merged.method == "lora" and merged.load["adapter"] is None
    assert merged.load["model"] == str(merged.path) and (merged.path / "adapter" / "adapter_config.json").is_file()
    assert not list(models.glob(".*"))  # built under a hidden name, renamed into place
    assert {v.version for v in list_versions(models)} == {"v1-id", "v2-id", merged.version}

    image, settings = load_image(ASTRONAUT), GenerationSettings(max_new_tokens=12)
    template = services.slot.config
    whole = load_model(config_for(version_by_name(services, "spring-fixes-merged"), template, "demo"))
    adapter = load_model(config_for(str(models / "v1"), template, "demo"))
    assert whole.info.version == merged.version and whole.info.adapter is None
    base = services.slot.get().model.state_dict()  # the demo model: the adapter really changed weights
    assert any(not torch.equal(t, base[k]) for k, t in whole.model.state_dict().items())
    assert whole.caption(image, QUESTION, settings) == adapter.caption(image, QUESTION, settings)
    whole.release(), adapter.release()

    with pytest.raises(gr.Error, match="is merged already, as v1-merged"):
        merge(services, admin, "v1")
    with pytest.raises(gr.Error, match="is a merged version, already a whole model"):
        merge(services, admin, "spring-fixes-merged")
    with pytest.raises(gr.Error, match="not a trained version"):
        merge(services, admin, "base")
    assert [e.action for e in services.store.audit.entries()] == ["merge_version", "rename_version"]


def test_delete_needs_the_name_again_and_spares_what_is_in_use(services, monkeypatch):
    import train.manage
    from app.models_tab import delete, use_in_demo
    from train.versions import list_versions

    admin, models = _admin(), services.models
    before = _tree(models)
    for typed in ("", "v2", "base", "nonsense"):
        with pytest.raises(gr.Error, match="type the version's name again: v1"):
            delete(services, admin, "v1", typed)
    use_in_demo(services, admin, "v1")
    with pytest.raises(gr.Error, match="the demo is serving it right now"):
        delete(services, admin, "v1", "v1")
    job = services.jobs.jobs.create({"base": "demo"}, str(models / "v2"), str(models / "v2" / "train.log"), None)
    with pytest.raises(gr.Error, match=f"training job {job.id} \\(queued\\) is writing it"):
        delete(services, admin, "v2", "v2-id")
    services.jobs.jobs.finish(job.id, "cancelled")
    job = services.jobs.jobs.create({"base": str(models / "v2")}, str(models / "next"), "log", None)
    with pytest.raises(gr.Error, match="trains from it"):
        delete(services, admin, "v2", "v2-id")
    services.jobs.jobs.finish(job.id, "cancelled")
    assert _tree(models) == before

    # A crash between the rename and the removal: the version is gone from the list at once,
    # and the next deletion sweeps what was left.
    def crash(path, *args, **kwargs):
        raise KeyboardInterrupt("killed mid-delete")

    monkeypatch.setattr(train.manage.shutil, "rmtree", crash)
    with pytest.raises(KeyboardInterrupt):
        delete(services, admin, "v2", "v2-id")
    monkeypatch.undo()
    assert [v.version for v in list_versions(models)] == ["v1-id"] and len(list(models.glob(".trash-*"))) == 1
    use_in_demo(services, admin, "base")
    assert delete(services, admin, "v1", "v1").version == "v1-id"
    assert list_versions(models) == [] and not list(models.iterdir())
    assert [e.action for e in services.store.audit.entries()][:1] == ["delete_version"]


def _public(admins="alice", auth=True):
    from app.policy import resolve_access

    return resolve_access("127.0.0.1", public=True, auth=auth, admins=admins, env={})


CALLS = [("/version_rename", {"name": "v1", "new_name": "spring-fixes"}), ("/version_merge", {"name": "v1"}),
         ("/version_delete", {"name": "v1", "confirm": "v1"})]


def test_the_api_refuses_visitors_and_reviewers_and_lets_an_admin_manage_versions(services):
    slot, store, runner, models = services.slot, services.store, services.jobs, services.models
    before = _tree(models)
    with running_app(slot=slot, store=store, jobs=runner, access=_public(auth=False)) as url:
        anonymous = Client(url, verbose=False)
        for endpoint, kwargs in CALLS:
            with pytest.raises(AppError, match="needs the admin role"):
                anonymous.predict(**kwargs, api_name=endpoint)
    with running_app(slot=slot, store=store, jobs=runner, auth=USERS, access=_public()) as url:
        bob = Client(url, auth=("bob", "bob-pw"), verbose=False)  # a reviewer
        for endpoint, kwargs in CALLS:
            with pytest.raises(AppError, match="Renaming, merging or deleting model versions needs the admin role"):
                bob.predict(**kwargs, api_name=endpoint)
        assert _tree(models) == before and not slot.loaded

        alice = Client(url, auth=("alice", "alice-pw"), verbose=False)
        named = alice.predict(name="v1", new_name="spring-fixes", api_name="/version_rename")
        assert (named["name"], named["display_name"], named["version"]) == ("v1", "spring-fixes", "v1-id")
        listed = alice.predict(api_name="/versions")
        assert [(v["name"], v.get("display_name")) for v in listed] == [("base", None), ("v2", None),
                                                                         ("v1", "spring-fixes")]
        assert alice.predict(name="spring-fixes", api_name="/use_version")["version"].endswith("+v1-id")
        with pytest.raises(AppError, match="the demo is serving it right now"):
            alice.predict(name="spring-fixes", confirm="spring-fixes", api_name="/version_delete")
        with pytest.raises(AppError, match="already names version v1-id"):
            alice.predict(name="v2", new_name="spring-fixes", api_name="/version_rename")
        merged = alice.predict(name="v2", api_name="/version_merge")
        assert merged["merged"] and merged["merged_from"] == "v2-id" and merged["name"] == "v2-merged"
        gone = alice.predict(name="v2", confirm="v2-id", api_name="/version_delete")
        assert gone["version"] == "v2-id" and not (models / "v2").exists()
        log = alice.predict(api_name="/audit_log")
    assert [(e["actor"], e["action"], e["allowed"]) for e in log[:4]] == [
        ("alice", "delete_version", True), ("alice", "merge_version", True), ("alice", "use_version", True),
        ("alice", "rename_version", True)]
    refused = [e for e in store.audit.entries() if not e.allowed]
    assert {(e.actor, e.action) for e in refused} == {("bob", "manage_versions")}  # anonymous: console only


@pytest.mark.browser
def test_in_the_browser_a_version_is_renamed_then_deleted_in_two_steps(services, artifacts_dir):
    from tests.browser import browser_page

    models = services.models
    # The tab's table is drawn when the tab is first opened: absent until then.
    has = "t => (document.querySelector('#models-table')?.innerText ?? '').includes(t)"
    with running_app(slot=services.slot, store=services.store, jobs=services.jobs) as url, browser_page() as page:
        page.goto(url)
        page.get_by_role("tab", name="Models").click()
        page.wait_for_function(has, arg="v2-id", timeout=30_000)  # the newest version is the one chosen
        page.locator("#models-manage").get_by_text("Rename, merge or delete").click()
        page.locator("#models-name textarea").fill("spring-fixes")
        page.locator("#models-rename").click()
        page.wait_for_function(has, arg="spring-fixes", timeout=30_000)
        page.locator("#models-delete").click()
        confirm = page.locator("#models-confirm")
        confirm.get_by_text("Type spring-fixes to delete it for good").wait_for(timeout=30_000)
        confirm.locator("textarea").fill("v1")  # another version's name: refused
        page.locator("#models-delete-confirm").click()
        page.get_by_text("type the version's name again: spring-fixes").first.wait_for(timeout=30_000)
        assert (models / "v2").is_dir()
        confirm.locator("textarea").fill("spring-fixes")
        page.locator("#models-delete-confirm").click()
        page.wait_for_function(f"() => !({has})('v2-id')", timeout=30_000)
        page.screenshot(path=str(artifacts_dir / "models-manage.png"), full_page=True)
    assert not (models / "v2").exists() and (models / "v1").is_dir()
    assert [e.action for e in services.store.audit.entries()] == ["delete_version", "rename_version"]
