"""Import of crafted HumanCaption-HQ / HumanCaption-10M parquet and LLaVA JSON files, with
malformed rows, duplicates, and URL fetching that refuses private and loopback addresses."""

import http.server
import json
import shutil
import threading

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from annotate.errors import FetchRefused, ImportFailed
from annotate.fetch import vetted_address
from annotate.importers import import_file
from annotate.store import Store
from tests.conftest import ASTRONAUT, REPO

CAMERA = REPO / "static" / "examples" / "camera.png"
TURN = pa.struct([("from", pa.string()), ("value", pa.string())])


def turns(caption, prompt="<image>\nDescribe the person."):
    return [{"from": "human", "value": prompt}, {"from": "gpt", "value": caption}]


@pytest.fixture
def store(tmp_path):
    with Store(f"sqlite:///{tmp_path / 'queue.db'}", tmp_path / "data") as opened:
        yield opened


def write_hq(path, rows):
    urls, convs = zip(*rows)
    pq.write_table(pa.table({"url": pa.array(urls, pa.string()),
                             "human_caption_hq": pa.array(convs, pa.list_(TURN))}), path)
    return path


def test_humancaption_hq_parquet_with_bad_rows_and_duplicates(store, tmp_path):
    path = write_hq(tmp_path / "hq.parquet", [
        ("https://img.example.org/0.jpg", turns("A woman with short hair in a red coat.")),
        ("https://img.example.org/1.jpg", [{"from": "human", "value": "<image>\nDescribe."}]),  # no gpt turn
        (None, turns("No url here.")),
        ("ftp://img.example.org/3.jpg", turns("Wrong scheme.")),
        ("https://img.example.org/0.jpg", turns("Same image again.")),  # duplicate of row 0
        ("https://img.example.org/5.jpg", turns("A man sitting on a bench.")),
        ("https://img.example.org/6.jpg", None),  # turns missing
    ])
    result = import_file(store, path, chunk_rows=3)  # several chunks, duplicate across them
    assert (result.rows_read, result.imported, result.duplicates, result.bad) == (7, 2, 1, 4)
    assert [reason.split(":")[0] for reason in result.bad_reasons] == ["row 1", "row 2", "row 3", "row 6"]
    assert "no gpt turn" in result.bad_reasons[0]
    first = store.list_items()[0]
    assert first.image.url == "https://img.example.org/0.jpg" and first.image.path is None
    assert first.draft.caption == "A woman with short hair in a red coat."
    assert first.draft.prompt == "Describe the person."  # <image> placeholder stripped
    assert (first.draft.model_name, first.draft.model_version) == ("HumanCaption-HQ", "import:hq.parquet")
    again = import_file(store, path)  # importing twice adds nothing
    assert (again.imported, again.duplicates) == (0, 3)


def test_humancaption_10m_parquet_with_local_and_url_images(store, tmp_path):
    (tmp_path / "imgs").mkdir()
    shutil.copy(ASTRONAUT, tmp_path / "imgs" / "a.png")
    table = pa.table({
        "url": ["https://img.example.org/a.jpg", "https://img.example.org/b.jpg", "https://img.example.org/c.jpg",
                None, "https://img.example.org/e.jpg"],
        "image": ["imgs/a.png", "imgs/missing.png", "imgs/c.png", "../../etc/passwd", None],
        "human_caption": ["An astronaut smiling.", "A man on a street.", "", "Escaping path.", "A child."],
    })
    pq.write_table(table, tmp_path / "10m.parquet")
    result = import_file(store, tmp_path / "10m.parquet")
    assert (result.imported, result.duplicates, result.bad) == (3, 0, 2)
    assert "row 2: human_caption is empty" in result.bad_reasons[0]
    assert "outside the dataset's folder" in result.bad_reasons[1]
    local, url_only, _ = store.list_items()
    assert local.image.path.read_bytes() == ASTRONAUT.read_bytes() and local.image.hash_kind == "content"
    assert local.image.url == "https://img.example.org/a.jpg"  # provenance kept
    assert url_only.image.path is None and url_only.draft.caption == "A man on a street."


def test_llava_json_relative_images(store, tmp_path):
    folder = tmp_path / "llava"
    (folder / "images").mkdir(parents=True)
    shutil.copy(ASTRONAUT, folder / "images" / "astronaut.png")
    shutil.copy(CAMERA, folder / "images" / "camera.png")
    (folder / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    rows = [
        {"id": "a", "image": "images/astronaut.png", "conversations": turns("An astronaut.")},
        {"id": "b", "image": "images/camera.png", "conversations": turns("A photographer.")},
        {"id": "c", "image": "images/gone.png", "conversations": turns("Missing file.")},
        {"id": "d", "image": "images/camera.png", "conversations": turns("Same photo again.")},
        {"id": "e", "conversations": turns("No image.")},
        "not an object",
        {"id": "g", "image": "images/broken.png", "conversations": turns("Corrupt.")},
    ]
    (folder / "data.json").write_text(json.dumps(rows))
    result = import_file(store, folder / "data.json")
    assert (result.rows_read, result.imported, result.duplicates, result.bad) == (7, 2, 1, 4)
    assert [r.split(":")[0] for r in result.bad_reasons] == ["row 2", "row 4", "row 5", "row 6"]
    assert "truncated or corrupt" in result.bad_reasons[3]
    items = store.list_items()
    assert [i.draft.caption for i in items] == ["An astronaut.", "A photographer."]
    assert items[1].image.path.read_bytes() == CAMERA.read_bytes()


def test_unreadable_files_fail_cleanly(store, tmp_path):
    pq.write_table(pa.table({"foo": [1]}), tmp_path / "other.parquet")
    with pytest.raises(ImportFailed, match="expected url"):
        import_file(store, tmp_path / "other.parquet")
    (tmp_path / "fake.parquet").write_text("hello")
    with pytest.raises(ImportFailed, match="not a readable parquet"):
        import_file(store, tmp_path / "fake.parquet")
    with pytest.raises(ImportFailed, match="does not exist"):
        import_file(store, tmp_path / "missing.parquet")
    (tmp_path / "list.json").write_text('{"not": "a list"}')
    with pytest.raises(ImportFailed, match="JSON list"):
        import_file(store, tmp_path / "list.json")


class _Recorder(http.server.BaseHTTPRequestHandler):
    requests = []

    def do_GET(self):  # noqa: N802 (http.server's naming)
        _Recorder.requests.append(self.path)
        body = ASTRONAUT.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_fetch_images_refuses_private_and_loopback_addresses(store, tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        path = write_hq(tmp_path / "hq.parquet", [
            (f"http://127.0.0.1:{port}/a.png", turns("Loopback.")),
            (f"http://localhost:{port}/b.png", turns("Loopback by name.")),
            ("http://10.1.2.3/c.png", turns("Private network.")),
            ("http://169.254.169.254/latest/meta-data", turns("Link-local metadata service.")),
            ("http://[::1]/d.png", turns("IPv6 loopback.")),
            ("http://0.0.0.0/e.png", turns("Unspecified.")),
        ])
        result = import_file(store, path, fetch_images=True)
    finally:
        server.shutdown()
    assert (result.imported, result.bad) == (0, 6)
    assert all("non-public address" in reason for reason in result.bad_reasons), result.bad_reasons
    assert _Recorder.requests == []  # refused before connecting: the server saw nothing
    without_fetch = import_file(store, path)  # without --fetch-images the URLs are only stored
    assert without_fetch.imported == 6


def test_every_resolved_address_is_checked():
    with pytest.raises(FetchRefused, match="non-public"):
        vetted_address("localhost", 80)
    with pytest.raises(FetchRefused, match="non-public"):
        vetted_address("::ffff:127.0.0.1", 80)  # IPv4-mapped loopback
    with pytest.raises(FetchRefused, match="non-public"):
        vetted_address("100.64.0.1", 80)  # carrier-grade NAT: not global


def approved_store(root):
    """A queue with two photos and a URL-only item, every one corrected and approved."""
    from annotate.records import Draft, NewItem

    store = Store(f"sqlite:///{root / 'a.db'}", root / "a-data")
    store.enqueue(ASTRONAUT, Draft("demo", "v1", "a person"), licence="public domain")
    store.enqueue(CAMERA, Draft("demo", "v1", "a man"))
    store.enqueue_many([NewItem("f" * 64, "url", Draft("demo", "v1", "someone"), url="https://img.example.org/u.jpg")])
    while (item := store.claim_next("alice")) is not None:
        version = store.submit_correction(item.id, "alice", f"Corrected caption {item.id}.", item.version)
        store.approve(item.id, "alice", expected_version=version)
    return store


def test_the_apps_own_exports_import_back_with_images_and_no_duplicates(tmp_path):
    from PIL import Image

    from annotate.export import export
    from tests.conftest import run_app

    source = approved_store(tmp_path)
    export(source, tmp_path / "hq", split=0.5)
    export(source, tmp_path / "llava", format="llava", split=0.5)
    captions = {item.caption for item in source.list_items()}
    # Into the queue it came from: every row is already there.
    for folder in ("hq", "llava"):
        for path in (tmp_path / folder).glob("*.*"):
            if path.suffix == ".parquet" or path.name in ("train.json", "test.json"):
                assert import_file(source, path).imported == 0
    assert len(source.list_items()) == 3
    source.close()

    # Into a fresh queue, through the CLI, by folder: images (embedded bytes) and captions.
    db = f"sqlite:///{tmp_path / 'b.db'}"
    done = run_app("queue", "import", str(tmp_path / "hq"), "--json", "--db", db, "--data-dir", str(tmp_path / "b"))
    assert done.returncode == 0, done.stderr
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert sum(r["imported"] for r in results) == 3 and sum(r["bad"] for r in results) == 0
    with Store(db, tmp_path / "b") as fresh:
        items = fresh.list_items()
        assert {i.draft.caption for i in items} == captions
        assert [i.image.url for i in items if not i.image.path] == ["https://img.example.org/u.jpg"]

        def pixels(path):
            with Image.open(path) as img:
                return img.convert("RGB").tobytes()

        # The same photos, pixel for pixel (PNG is lossless), and their recorded licences.
        assert {pixels(i.image.path) for i in items if i.image.path} == {pixels(ASTRONAUT), pixels(CAMERA)}
        assert sorted(str(i.image.licence) for i in items if i.image.path) == ["None", "public domain"]
        # The LLaVA export of the same photos: the same re-encoded files, so duplicates here.
        again = [import_file(fresh, p) for p in sorted((tmp_path / "llava").glob("t*.json"))]
        assert sum(r.imported for r in again) == 0 and sum(r.duplicates for r in again) == 2
        hq_again = [import_file(fresh, p) for p in sorted((tmp_path / "hq").glob("*.parquet"))]
        assert sum(r.imported for r in hq_again) == 0 and sum(r.duplicates for r in hq_again) == 3

    # The LLaVA folder alone, into another fresh queue: both photos, with their captions.
    with Store(f"sqlite:///{tmp_path / 'c.db'}", tmp_path / "c") as other:
        results = [import_file(other, p) for p in sorted((tmp_path / "llava").glob("t*.json"))]
        assert sum(r.imported for r in results) == 2
        assert {i.draft.caption for i in other.list_items()} == captions - {"Corrected caption 3."}
        assert all(i.image.path.is_file() for i in other.list_items())
