"""The Train tab's form: more settings (LoRA rank, alpha and target modules, scheduler, dtype,
report-to, held-out share, checkpoint interval, cutoff...), a chosen export to train on, the
exact commands a job runs, the base's defaults beside the form, and why Resume is unavailable."""

import shlex

import pytest
from gradio_client import Client

from tests.conftest import running_app
from tests.train_support import approve_shapes, export_to


@pytest.fixture()
def served(tmp_path):
    from annotate.export import exports_dir
    from annotate.store import Store
    from train.jobs import JobRunner, RunnerConfig

    store = Store(f"sqlite:///{tmp_path / 'studio.db'}", tmp_path / "data")
    approve_shapes(store, 4, seed=3)
    export_to(store, exports_dir(store.data_dir) / EXPORT, split=0.5)  # what the Export tab writes
    runner = JobRunner(RunnerConfig(db_url=store.url, models_dir=tmp_path / "models"))
    with running_app(store=store, jobs=runner) as url:
        yield Client(url, verbose=False), runner, store
    for job in runner.list(limit=10):
        if job.active:
            runner.cancel(job.id)
            runner.wait(job.id, 60)
    runner.close()
    store.close()


EXPORT = "20250101-000000-llava"
# Gradio's own check (a value not among a dropdown's choices) or the app's refuses these.
NOT_LISTED = "|not in the list of choices"
FORM = {"base": "demo", "method": "lora", "epochs": 0, "max_steps": 3, "lr": 0, "batch": 2}
MORE = {"lora_r": 8, "lora_alpha": 16, "grad_accum": 2, "save_steps": 5, "max_length": 2048, "vision": "lora",
        "merge": True, "lora_targets": ["q_proj", "v_proj", "fc1"], "lr_scheduler_type": "linear",
        "dtype": "float32", "report_to": "none"}
PLAIN = {"lora_r": 0, "lora_alpha": 0, "grad_accum": 0, "save_steps": 0, "max_length": 0, "vision": None,
         "merge": False, "lora_targets": [], "lr_scheduler_type": "cosine", "dtype": "auto", "report_to": "auto",
         "heldout": 0.1, "data": "fresh"}


def _ui(client, endpoint, **values):
    """Call a form button's endpoint (positional: the UI's endpoints are undocumented), the form
    at its defaults except `values`."""
    values = FORM | PLAIN | values
    assert len(values) == 19, "a name in `values` is not a field of the form"
    return client.predict(*values.values(), api_name=endpoint)


def _cancel(runner):
    job = runner.list(limit=1)[0]
    runner.cancel(job.id)
    runner.wait(job.id, 60)
    return job


def test_preview_is_the_command_the_cli_accepts(served):
    from app.cli import build_parser

    client, runner, _ = served
    command = _ui(client, "/ui_train_preview", **MORE, heldout=0.2)
    export, train = command.splitlines()
    assert export == "python app.py export --format llava --out EXPORT --split 0.8"
    export_args = build_parser().parse_args(shlex.split(export)[2:])
    assert export_args.split == 0.8
    args = build_parser().parse_args(shlex.split(train)[2:])
    assert (args.base, args.max_steps, args.batch_size, args.lora_r, args.lora_alpha, args.grad_accum,
            args.save_steps, args.max_length, args.vision_tower, args.merge) == \
        ("demo", 3, 2, 8, 16, 2, 5, 2048, "lora", True)
    assert (args.lora_targets, args.lr_scheduler_type, args.dtype, args.report_to) == \
        ("q_proj,v_proj,fc1", "linear", "float32", "none")
    assert _ui(client, "/ui_train_preview", heldout=0).splitlines()[0] == \
        "python app.py export --format llava --out EXPORT --split 1"
    # The same checks as the job: each of these is refused with a message naming the setting.
    for values, message in [({"lora_r": -1}, "lora"), ({"lora_targets": ["fc1"]}, "vision tower is frozen"),
                            ({"lora_targets": ["lm_head"]}, "Unknown LoRA target"),
                            ({"lr_scheduler_type": "sometimes"}, "scheduler"), ({"dtype": "int3"}, "dtype"),
                            ({"report_to": "mlflow"}, "report"), ({"heldout": 0.9}, "held-out share|greater than maximum"),
                            ({"data": "../../etc"}, "No export named")]:
        with pytest.raises(Exception, match=f"(?i){message}{NOT_LISTED}"):
            _ui(client, "/ui_train_preview", **values)
    assert runner.list(limit=5) == []  # previewing starts nothing


def test_more_settings_reach_the_job(served):
    client, runner, _ = served
    _ui(client, "/ui_train_start", lora_r=4, lora_alpha=8, save_steps=1, lora_targets=["q_proj", "v_proj"],
        lr_scheduler_type="constant_with_warmup", dtype="float32", report_to="none", heldout=0.25)
    job = _cancel(runner)
    assert (job.options["lora_r"], job.options["lora_alpha"], job.options["save_steps"]) == (4, 8, 1)
    assert (job.options["lora_targets"], job.options["lr_scheduler_type"], job.options["dtype"],
            job.options["report_to"], job.options["heldout"]) == ("q_proj,v_proj", "constant_with_warmup",
                                                                  "float32", "none", 0.25)


def test_a_listed_export_is_trained_on_by_name_and_nothing_else(served):
    from annotate.export import exports_dir

    client, runner, store = served
    folder = exports_dir(store.data_dir) / EXPORT
    command = _ui(client, "/ui_train_preview", data=folder.name)
    assert command.startswith(f"python app.py train --data DATA_DIR/exports/{folder.name} ")  # no export step
    with pytest.raises(Exception, match="fresh export"):  # its split is its own
        client.predict(base="demo", export=folder.name, heldout=0.3, api_name="/train_start")
    for probe in (str(folder), str(store.data_dir), "/etc", "../exports/" + EXPORT):  # never a typed path
        with pytest.raises(Exception, match="No export named" + NOT_LISTED):
            _ui(client, "/ui_train_start", data=probe)
        with pytest.raises(Exception, match="No export named"):
            client.predict(base="demo", export=probe, api_name="/train_start")
    assert runner.list(limit=5) == []
    _ui(client, "/ui_train_start", data=folder.name)
    job = _cancel(runner)
    assert job.data_dir == str(folder.resolve()) and "heldout" not in job.options
    # The typed API takes the same names, with the same checks.
    job_dict = client.predict(base="demo", max_steps=2, export=folder.name, lora_targets="q_proj",
                              lr_scheduler_type="linear", api_name="/train_start")
    assert job_dict["options"]["data"] == str(folder.resolve()) and job_dict["options"]["lora_targets"] == "q_proj"
    _cancel(runner)
    with pytest.raises(Exception, match="(?i)unknown LoRA target"):
        client.predict(base="demo", lora_targets="q_proj,wq", api_name="/train_start")
    # What to train on and what ran, for API callers too.
    assert folder.name in [e["name"] for e in client.predict(api_name="/train_exports")]
    listed = client.predict(api_name="/train_jobs")
    assert [j["id"] for j in listed] == [j.id for j in runner.list(limit=20)] and len(listed) == 2
    assert listed[0]["options"]["lora_targets"] == "q_proj" and listed[0]["status"] == "cancelled"


def test_the_exports_offered_are_the_approved_ones_newest_first(tmp_path):
    import json

    from annotate.export import export, list_exports
    from annotate.store import Store

    with Store(f"sqlite:///{tmp_path / 'q.db'}", tmp_path / "data") as store:
        approve_shapes(store, 3, seed=1)
        export(store, tmp_path / "exports" / "old", format="llava")
        export(store, tmp_path / "exports" / "new", format="humancaptionhq")
        export(store, tmp_path / "exports" / "rejected", format="llava", status="rejected")
    manifest = tmp_path / "exports" / "old" / "manifest.json"
    manifest.write_text(json.dumps(json.loads(manifest.read_text()) | {"created_at": "2020-01-01T00:00:00+00:00"}))
    (tmp_path / "exports" / "new.zip").write_bytes(b"a download, not an export")
    found = list_exports(tmp_path / "exports", status="approved")
    assert [(e.name, e.format) for e in found] == [("new", "humancaptionhq"), ("old", "llava")]
    assert found[0].counts["train"] + found[0].counts["test"] == 3 and "held-out" in found[0].label()
    assert list_exports(tmp_path / "nowhere") == []


def test_the_defaults_beside_the_form_come_from_the_recipes():
    from train.options import DEMO_DEFAULTS, HUMANVLM_DEFAULTS, defaults_for, describe_defaults

    assert defaults_for("demo") is DEMO_DEFAULTS and defaults_for("OpenFace-CQUPT/Human_LLaVA") is HUMANVLM_DEFAULTS
    real, demo = describe_defaults(HUMANVLM_DEFAULTS), describe_defaults(DEMO_DEFAULTS)
    assert "lr 5e-05" in real and "batch 4 x 4" in real and "r128/α256" in real and "vision tower" in real
    assert "lr 0.003" in demo and "20 epochs" in demo and "r32/α64" in demo


def test_lora_targets_are_checked_against_the_models_layers():
    from torch import nn

    from train.errors import OptionsError
    from train.trainer import check_lora_targets

    model = nn.Module()  # an architecture whose MLP layers are named differently
    model.language_model = nn.ModuleDict({"q_proj": nn.Linear(2, 2), "v_proj": nn.Linear(2, 2),
                                          "wi": nn.Linear(2, 2)})
    check_lora_targets(model, ("q_proj", "v_proj"), vision=False)
    with pytest.raises(OptionsError, match="gate_proj matches no layer of this model.*q_proj, v_proj"):
        check_lora_targets(model, ("q_proj", "gate_proj"), vision=False)


def test_resume_says_why_it_is_unavailable():
    from app.train_tab import job_markdown
    from train.jobstore import Job

    fields = Job.__dataclass_fields__
    base = {name: None for name in fields}
    job = Job(**{**base, "id": 7, "status": "cancelled", "options": {"base": "demo", "method": "lora", "save_steps": 50},
                 "attempts": 1, "out_dir": "/nonexistent", "data_dir": None})
    text = job_markdown(job)
    assert "Resume** is not available" in text and "one every 50 steps" in text
