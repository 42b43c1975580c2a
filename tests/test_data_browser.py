"""The data browser: the query on a real queue, and the Data tab in a real headless Chromium."""

import pytest

from tests.browser import browser_page
from tests.conftest import ASTRONAUT, running_app


@pytest.fixture()
def store(tmp_path):
    from PIL import Image

    from annotate.records import Draft
    from annotate.store import Store

    with Store(f"sqlite:///{tmp_path / 'q.db'}", tmp_path / "data") as store:
        store.enqueue(ASTRONAUT, Draft("demo", "v1", caption="A woman in an orange suit."))
        for i, colour in enumerate(["red", "green", "blue"]):
            store.enqueue(Image.new("RGB", (32, 32), colour), Draft("demo", f"v{2 + i % 2}", caption=f"A {colour} 50%_square."))
        item = store.claim_next("rita")
        store.approve(item.id, "rita")
        item = store.claim_next("rob")
        store.reject(item.id, "rob", "not a person")
        yield store


def test_filters_search_and_sort(store):
    from annotate.browse import Filter, browse

    items, total = browse(store)
    assert total == 4 and [i.id for i in items] == [4, 3, 2, 1]
    assert [i.id for i in browse(store, Filter(status="approved"))[0]] == [1]
    assert [i.id for i in browse(store, Filter(reviewer="rob"))[0]] == [2]
    assert [i.id for i in browse(store, Filter(model_version="v3"))[0]] == [3]
    assert [i.id for i in browse(store, Filter(text="ORANGE"))[0]] == [1]
    assert [i.id for i in browse(store, Filter(text="50%_s"))[0]] == [4, 3, 2]  # % and _ are literal
    assert browse(store, Filter(text="50%x"))[1] == 0
    assert [i.id for i in browse(store, Filter(order="oldest"), limit=2, offset=1)[0]] == [2, 3]
    with pytest.raises(ValueError, match="status is one of"):
        browse(store, Filter(status="deleted"))


@pytest.mark.browser
def test_data_tab_finds_and_opens_a_rejected_item_with_its_history(store):
    with running_app(store=store) as url, browser_page() as page:
        page.goto(url)
        page.get_by_role("tab", name="Data").click()
        page.locator("#data-found").get_by_text("4 items").wait_for(timeout=30_000)
        page.locator("#data-search textarea, #data-search input").first.fill("red")
        page.locator("#data-search-btn").click()
        page.locator("#data-found").get_by_text("1 item").wait_for(timeout=30_000)
        page.locator("#data-item-id input").fill("2")
        page.locator("#data-open").click()
        page.locator("#data-item").get_by_text("rejected: not a person").wait_for(timeout=30_000)
        history = page.locator("#data-history").inner_text()
        assert "claim" in history and "reject" in history and "rob" in history


@pytest.mark.browser
def test_adjudication_view_keeps_one_correction(tmp_path):
    from annotate.store import Store
    from tests.train_support import disagreeing_reviews

    with Store(f"sqlite:///{tmp_path / 'a.db'}", tmp_path / "adata") as store:
        disagreeing_reviews(store, ASTRONAUT)
        with running_app(store=store) as url, browser_page() as page:
            page.goto(url)
            page.get_by_role("tab", name="Data").click()
            page.get_by_text("Adjudicate disagreements (admins)").click()
            page.locator("#adj-list").click()
            page.wait_for_function("() => document.querySelector('#adj-table').innerText.includes('bob, carol')",
                                   timeout=30_000)
            page.locator("#adj-item input").fill("1")
            page.locator("#adj-item input").press("Enter")
            page.locator("#adj-diff").get_by_text("cats").first.wait_for(timeout=30_000)
            page.locator("#adj-keep-a").click()
            page.locator("#adj-result").get_by_text("Item 1 settled (kept bob)").wait_for(timeout=30_000)
        assert store.get_item(1).final_source == "pick:bob"
        assert store.get_item(1).caption == "A woman in an orange flight suit."
