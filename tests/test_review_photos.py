"""Items known only by their URL (a HumanCaption-HQ import without --fetch-images): the photo is
fetched safely when the item is claimed, and a caption whose photo nobody saw is never approved."""

import functools
import http.server
import threading

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from tests.conftest import ASTRONAUT, running_app


@pytest.fixture()
def image_server():
    """A real HTTP server with one photo (/astronaut.png); anything else is 404."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(ASTRONAUT.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture()
def store(tmp_path, image_server):
    from annotate.records import Draft
    from annotate.store import Store

    with Store(f"sqlite:///{tmp_path / 'q.db'}", tmp_path / "data") as store:
        store.enqueue_url(f"{image_server}/astronaut.png", Draft("import", "hq", caption="A woman."))
        store.enqueue_url(f"{image_server}/missing.png", Draft("import", "hq", caption="A man."))
        yield store


def test_a_url_only_photo_is_fetched_on_claim_and_a_missing_one_cannot_be_approved(store):
    from annotate.fetch import FetchLimits

    # The image server is on loopback: the operator allows private hosts (--fetch-private-hosts).
    with running_app(store=store, fetch_limits=FetchLimits(allow_private=True)) as url:
        c = Client(url, verbose=False)
        first = c.predict(api_name="/review_claim")
        assert first["image"] and first["note"] is None
        assert store.get_item(first["id"]).image.path.is_file()
        c.predict(item_id=first["id"], caption="A woman in an orange suit.", api_name="/review_approve")
        second = c.predict(api_name="/review_claim")
        assert second["image"] is None and "HTTP 404" in second["note"]
        with pytest.raises(AppError, match="approving it would approve a caption blind"):
            c.predict(item_id=second["id"], caption="A man.", api_name="/review_approve")
        assert store.get_item(second["id"]).status == "in_review"
        assert c.predict(item_id=second["id"], reason="photo gone", api_name="/review_reject")["status"] == "rejected"


def test_private_addresses_are_refused_by_default_and_the_review_tab_says_why(store):
    with running_app(store=store) as url:
        c = Client(url, verbose=False)
        view = c.predict("rita", api_name="/ui_claim_next")
        photo, source, status = view[0], view[1], view[10]
        assert photo is None and "non\\-public address" in source and "Item **1**" in status
        c.predict("rita", "A woman.", "", "", "", "", "", [], api_name="/ui_approve")  # refused: a warning
        assert store.get_item(1).status == "in_review" and store.get_item(1).image.path is None
