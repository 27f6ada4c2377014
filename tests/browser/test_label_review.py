"""Bulk labeling in a real browser: an editor starts a labeling job from the review page, the worker
labels the album, and the labels are reviewed with the keyboard (A accept, 1–9 correct, R reject,
J/K move), every change through the labeling API."""

import io

import pytest

from search.rag.models import Label
from tests.browser.test_ui_flow import browser, new_page, shot, sign_in  # noqa: F401,F811 — browser is a fixture
from tests.rag.conftest import ENCODER, augmented, jpeg, photo

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_an_editor_labels_the_album_and_reviews_with_the_keyboard(worker, live_server, browser, make_user):  # noqa: F811
    from albums import services
    from search.rag import services as rag

    erin = make_user("erin")
    album = services.album_create(owner=erin, name="Inspection", encoder_spec=ENCODER)
    support_set = rag.support_set_create(album=album, user=erin, name="cat or cup", support_resolution=224, patch_size=32)
    for label, sample in (("cat", "chelsea"), ("cup", "coffee")):
        support_class = rag.support_class_create(support_set=support_set, label=label)
        rag.support_images_add(support_class=support_class, user=erin, files=[(f"{sample}.jpg", io.BytesIO(jpeg(photo(sample))))])
    services.image_upload_many(album=album, user=erin, files=[
        ("cat-2.jpg", io.BytesIO(augmented("chelsea"))), ("cup-2.jpg", io.BytesIO(augmented("coffee"))),
        ("astronaut.jpg", io.BytesIO(jpeg(photo("astronaut"))))])

    page = new_page(browser)
    sign_in(page, live_server.url, "erin")
    page.goto(f"{live_server.url}/support-sets/{support_set.pk}/")
    page.get_by_role("link", name="Label the album and review").click()
    page.wait_for_load_state("load")
    page.get_by_role("button", name="Start").click()
    page.locator("#job-status").filter(has_text="succeeded").wait_for(timeout=120_000)
    items = page.locator("#review-list .review-item")
    items.nth(4).wait_for()
    assert items.count() == 5  # two examples and three uploads
    margins = [float(t.split("margin ")[1].split(" ")[0]) for t in page.locator("#review-list .review-item .meta").all_inner_texts()
               if "margin " in t]
    assert margins == sorted(margins)
    assert page.locator("#review-list .review-item.current .evidence img").count() == 2
    shot(page, "label-review")

    first_id = int(items.nth(0).get_attribute("data-id"))
    page.keyboard.press("a")  # accept the first; the focus moves on
    page.locator(f"#review-list .review-item[data-id='{first_id}'] .badge.accepted").wait_for()
    second_id = int(items.nth(1).get_attribute("data-id"))
    second = Label.objects.get(pk=second_id)
    other = "cup" if second.predicted_label == "cat" else "cat"
    page.keyboard.press("2" if other == "cup" else "1")
    page.locator(f"#review-list .review-item[data-id='{second_id}'] .badge.corrected").wait_for()
    page.keyboard.press("k")  # back to the second
    page.keyboard.press("r")
    page.locator(f"#review-list .review-item[data-id='{second_id}'] .badge.rejected").wait_for()
    assert Label.objects.get(pk=first_id).state == "accepted"
    assert Label.objects.get(pk=second_id).state == "rejected"
