"""The UI in a real browser (Debian's chromium driven by Playwright) against a live server and a
real worker: sign in, create an album, upload, watch indexing finish, search by image."""

import os
import shutil

import pytest

from tests.images import noise_png

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture
def page(tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.fail("chromium is not installed: `make test` installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # the live server runs beside Playwright's loop
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(30_000)
        yield page
        context.close()
        browser.close()


def test_sign_in_upload_index_and_search_by_image(worker, live_server, page, make_user, tmp_path):
    make_user("carol")
    files = []
    for i in range(3):
        path = tmp_path / f"photo-{i}.png"
        path.write_bytes(noise_png(size=(96, 72), seed=40 + i))
        files.append(str(path))
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")

    page.goto(f"{live_server.url}/")
    page.get_by_label("Username").fill("carol")
    page.get_by_label("Password").fill("pw-carol")
    page.get_by_role("button", name="Sign in").click()

    page.get_by_label("Name").fill("Browser album")
    page.get_by_role("button", name="Create album").click()
    page.wait_for_url("**/albums/*/")

    page.set_input_files("#files", [*files, str(bad)])
    page.wait_for_selector("#upload-results li.rejected")
    summary = page.locator("#upload-summary")
    summary.filter(has_text="3 added").wait_for()
    assert "notes.jpg: rejected" in page.locator("#upload-results").inner_text()

    # Indexing runs on the worker; the page follows it live and then shows the model search uses.
    page.locator("#search-model").filter(has_text="efficientnet-lite0").wait_for(timeout=90_000)
    page.locator("#count-indexed").filter(has_text="3").wait_for(timeout=90_000)
    assert page.locator(".grid .tile").count() == 3

    page.get_by_role("link", name="Search", exact=True).click()
    assert page.locator("#text-disabled").is_visible()  # EfficientNet-Lite0 is image-only
    assert page.locator("#q-text").is_disabled()
    page.set_input_files("#q-image", files[1])
    page.locator("#min-score").fill("-1")
    page.get_by_role("button", name="Search", exact=True).click()
    page.locator("#search-status").filter(has_text="3 results").wait_for()
    first_score = page.locator("#search-results .tile .score").first.inner_text()
    assert first_score == "1.0000"
    page.screenshot(path=str(tmp_path / "search.png"), full_page=True)

    # "More like this" from the image page.
    page.locator("#search-results .tile a").first.click()
    page.wait_for_selector("#similar .tile")
    assert page.locator("#similar .tile").count() == 2
