"""Pushing exports (and trained versions) to the Hub: everything up to the upload, against a
local HTTP endpoint that answers like the Hub's repo-creation API and refuses the upload."""

import http.server
import json
import threading
from contextlib import contextmanager

import pytest

from annotate.errors import QueueError
from annotate.export import export, hub_ignore
from annotate.publish import PublishFailed, check_repo_id, push_folder, upload_plan
from annotate.records import Draft
from annotate.store import Store
from tests.conftest import ASTRONAUT, REPO, run_app

CAMERA = REPO / "static" / "examples" / "camera.png"


class _Hub(http.server.BaseHTTPRequestHandler):
    requests: list = []

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        _Hub.requests.append((self.command, self.path, body, self.headers.get("Authorization")))
        if self.path == "/api/repos/create":
            request = json.loads(body)
            host = self.headers["Host"]
            self._answer(200, {"url": f"http://{host}/datasets/{request['organization']}/{request['name']}"})
        else:
            self._answer(403, {"error": "uploads are refused by this test endpoint"})

    do_GET = do_PUT = do_POST  # noqa: N815

    def log_message(self, *args):
        pass


@contextmanager
def local_hub():
    _Hub.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.fixture
def store(tmp_path):
    with Store(f"sqlite:///{tmp_path / 'queue.db'}", tmp_path / "data") as opened:
        opened.enqueue(ASTRONAUT, Draft("demo", "v1", "a person"))
        opened.enqueue(CAMERA, Draft("demo", "v1", "a man"))
        while (item := opened.claim_next("alice")) is not None:
            version = opened.submit_correction(item.id, "alice", f"Caption {item.id}.", item.version)
            opened.approve(item.id, "alice", expected_version=version)
        yield opened


def test_what_an_export_push_uploads(store, tmp_path):
    hq = export(store, tmp_path / "hq", split=0.5).out_dir
    assert upload_plan(hq, hub_ignore("humancaptionhq")) == ["README.md", "manifest.json", "test.parquet",
                                                              "train.parquet"]  # images are embedded
    llava = export(store, tmp_path / "llava", format="llava", split=0.5).out_dir
    plan = upload_plan(llava, hub_ignore("llava"))
    assert {"README.md", "dataset_info.json", "train.json", "test.json"} <= set(plan)
    assert sorted(p for p in plan if p.startswith("images/")) == sorted(
        f"images/{p.name}" for p in (llava / "images").iterdir())
    for bad in ("no-owner", "a/b/c", "me/bad name"):
        with pytest.raises(PublishFailed, match="OWNER/NAME|not a Hub repository id"):
            check_repo_id(bad)
    assert issubclass(PublishFailed, QueueError) and PublishFailed.user_facing


def test_export_push_creates_the_repository_then_reports_a_refused_upload_in_one_line(store, tmp_path):
    out = tmp_path / "pushed"
    with local_hub() as endpoint:
        done = run_app("export", "--format", "llava", "--out", str(out), "--push-to", "me/corrections", "--private",
                       "--db", store.url, "--data-dir", str(store.data_dir),
                       env={"HF_ENDPOINT": endpoint, "HF_HUB_OFFLINE": "0", "HF_TOKEN": "hf_local_test_token"})
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: could not push") and "me/corrections" in lines[0]
    assert (out / "README.md").is_file() and (out / "dataset_info.json").is_file()  # the export stays
    method, path, body, auth = _Hub.requests[0]
    assert (method, path, auth) == ("POST", "/api/repos/create", "Bearer hf_local_test_token")
    created = json.loads(body)
    assert (created["organization"], created["name"], created["type"], created["visibility"]) == (
        "me", "corrections", "dataset", "private")
    # Then the upload starts: huggingface_hub hands the dataset card to the Hub for validation (refused here).
    method, path, body, _ = _Hub.requests[1]
    assert path == "/api/validate-yaml" and json.loads(body)["content"] == (out / "README.md").read_text()
    assert len(_Hub.requests) == 2


def test_a_bad_repository_id_is_refused_before_exporting(store, tmp_path):
    done = run_app("export", "--out", str(tmp_path / "never"), "--push-to", "not a repo",
                   "--db", store.url, "--data-dir", str(store.data_dir))
    assert done.returncode == 2 and done.stderr.startswith("error: ") and not (tmp_path / "never").exists()


def test_offline_push_is_one_clear_line(tmp_path):
    (tmp_path / "README.md").write_text("card")
    with pytest.raises(PublishFailed, match="offline mode is enabled"):
        push_folder(tmp_path, "me/x", "dataset")  # the tests run with HF_HUB_OFFLINE=1
