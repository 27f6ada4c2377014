"""The photo-first UI in a real browser (Debian's chromium via Playwright) against a live server:
the grid scrolls without end and keeps its place in the address, the viewer answers the keyboard,
a selection deletes exactly what it counts, search results scroll past their first page and keep
their query through Back and reload, and no page scrolls sideways on a phone or logs an error.

Albums here are "indexed" by hand (vectors inserted through the product's insert path under a model
id whose encoder never loads), so the tests need no worker and no weights."""

from __future__ import annotations

import io
import os
import time

import numpy as np
import pytest

from albums import services
from albums.models import Album, Image
from tests.browser.test_ui_flow import FLAGS, CHROMIUM, SCREENSHOTS, sign_in
from tests.images import image_bytes, jpeg_with_exif
from workers.vector_store import embeddings_insert

pytestmark = [pytest.mark.browser, pytest.mark.slow]

MODEL = "open-clip:tiny-vit/random@sha256:0123456789ab"
DIM = 8
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield browser
        browser.close()


class Console:
    """Every console error and uncaught exception a page produces."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def watch(self, page) -> None:
        page.on("console", lambda m: self.errors.append(f"{page.url}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"{page.url}: {e}"))


def open_page(browser, console: Console, viewport=DESKTOP):
    page = browser.new_context(viewport=viewport).new_page()
    page.set_default_timeout(30_000)
    console.watch(page)
    return page


def photo_album(owner, *, name: str, count: int, indexed: bool = True) -> tuple[Album, list[int]]:
    """An album of `count` small distinct photos, the first with camera EXIF; when `indexed`, each has
    a unit vector under MODEL, and the album searches with it."""
    album = services.album_create(owner=owner, name=name)
    files = [("camera.jpg", io.BytesIO(jpeg_with_exif(orientation=1, size=(120, 80))))]
    files += [(f"photo-{i:04d}.jpg", io.BytesIO(image_bytes(size=(48, 36), color=(i % 256, (i // 256 * 37) % 256, (i * 13) % 256))))
              for i in range(1, count)]
    for start in range(0, len(files), 100):
        services.image_upload_many(album=album, user=owner, files=files[start : start + 100])
    ids = list(Image.objects.filter(album=album).order_by("-created_at", "-id").values_list("pk", flat=True))
    from workers.services import image_process_metadata

    image_process_metadata(image_ids=ids)  # what the worker does after an upload: EXIF, upright size
    if indexed:
        vectors = np.random.default_rng(7).standard_normal((len(ids), DIM)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        embeddings_insert(model_id=MODEL, image_ids=ids, vectors=vectors)
        Image.objects.filter(pk__in=ids).update(status=Image.Status.INDEXED)
        Album.objects.filter(pk=album.pk).update(active_model_id=MODEL, encoder_spec="open-clip:tiny-vit/random")
    from workers.models import IndexJob

    IndexJob.objects.filter(album=album).delete()  # the uploads' job: no worker runs here, none is needed
    return album, ids


def tile_ids(page, selector="#photo-grid .tile") -> list[str]:
    return page.eval_on_selector_all(selector, "(els) => els.map((e) => e.dataset.id)")


def test_grid_scrolls_on_keeps_its_place_and_the_viewer_answers_the_keyboard(live_server, browser, make_user):
    carol = make_user("carol")
    # LOUPE_UI_ALBUM_PHOTOS=2000 times the first screen of a large album (the figure in the notes).
    album, ids = photo_album(carol, name="Trip", count=int(os.environ.get("LOUPE_UI_ALBUM_PHOTOS", "130")))
    console = Console()
    page = open_page(browser, console)
    sign_in(page, live_server.url, "carol")

    started = time.perf_counter()
    page.goto(f"{live_server.url}/albums/{album.pk}/")
    # The first screen of thumbnails, loaded and decoded: the figure is reported, not asserted.
    page.wait_for_function("""() => {
        const imgs = Array.from(document.querySelectorAll('#photo-grid img'))
          .filter((i) => i.getBoundingClientRect().top < innerHeight);
        return imgs.length > 0 && imgs.every((i) => i.complete && i.naturalWidth > 0);
    }""")
    print(f"\nfirst screen of thumbnails ({len(ids)} photos): {1000 * (time.perf_counter() - started):.0f} ms")
    assert tile_ids(page) == [str(i) for i in ids[:60]]  # newest first, one page
    page.locator("#index-chip").filter(has_text="Up to date").wait_for()

    # The grid reloads (after an upload or a job) while its next page is on its way: the late page is
    # dropped, not added to the fresh grid (which would show its photos twice), and scrolling goes on.
    held = []
    next_page = lambda url: "/?page=" in url  # noqa: E731
    page.route(next_page, lambda route: route.continue_() if held else held.append(route))
    with page.expect_request(lambda r: next_page(r.url)):
        page.mouse.wheel(0, 100_000)
    page.evaluate("window.loupeReloadGrid()")
    with page.expect_response(lambda r: r.request == held[0].request):
        held[0].continue_()
    page.locator("#grid[aria-busy=false]").wait_for(state="attached")
    page.unroute(next_page)

    # Endless: scrolling to the end brings the next pages, then no more.
    while (shown := page.locator("#photo-grid .tile").count()) < len(ids):
        page.mouse.wheel(0, 100_000)
        page.wait_for_function(f"() => document.querySelectorAll('#photo-grid .tile').length > {shown}")
    assert tile_ids(page) == [str(i) for i in ids]
    assert page.locator("#grid-later").count() == 0
    # The page of the first photo on screen is in the address; a reload starts there, with the
    # earlier photos one scroll up.
    on_screen = page.evaluate("""() => Array.from(document.querySelectorAll('#photo-grid .tile'))
        .find((t) => t.getBoundingClientRect().bottom > 0).dataset.page""")
    assert on_screen != "1"
    page.wait_for_function(f"() => new URL(location.href).searchParams.get('page') === '{on_screen}'")
    page.reload()
    first_of_page = (int(on_screen) - 1) * 60
    assert tile_ids(page)[0] == str(ids[first_of_page])
    page.mouse.wheel(0, -100_000)
    page.wait_for_function(f"() => document.querySelector('#photo-grid .tile').dataset.id === '{ids[first_of_page - 60]}'")
    assert tile_ids(page)[:120] == [str(i) for i in ids[first_of_page - 60 : first_of_page + 60]]

    # The viewer: open the newest photo, walk with the arrows, info with "i", close with Esc.
    page.goto(f"{live_server.url}/albums/{album.pk}/")
    page.locator(f'#photo-grid .tile[data-id="{ids[0]}"] a.open').click()
    page.locator(".pswp--open").wait_for()
    assert f"view={ids[0]}" in page.url
    page.locator(".pswp[data-ready]").wait_for()  # keys count once the opening animation ends
    page.keyboard.press("ArrowRight")
    page.wait_for_function(f"() => location.search.includes('view={ids[1]}')")
    page.keyboard.press("ArrowLeft")
    page.wait_for_function(f"() => location.search.includes('view={ids[0]}')")
    page.keyboard.press("i")
    page.locator(".pswp-info .facts").filter(has_text="48 × 36").wait_for()
    page.keyboard.press("Escape")
    page.locator(".pswp").wait_for(state="detached")
    assert "view=" not in page.url

    # A viewer link shared with a member opens on that photo, with readable EXIF.
    camera_id = ids[-1]
    page.goto(f"{live_server.url}/albums/{album.pk}/?view={camera_id}")
    page.locator(".pswp[data-ready]").wait_for()
    page.keyboard.press("i")
    page.locator(".pswp-info .facts").filter(has_text="Canon EOS R5").wait_for()
    assert "2021" in page.locator(".pswp-info .facts").inner_text()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "viewer.png"))
    page.keyboard.press("Escape")
    assert console.errors == []


def test_a_selection_deletes_exactly_what_it_counts(live_server, browser, make_user):
    carol = make_user("carol")
    album, ids = photo_album(carol, name="Cleanup", count=12, indexed=False)
    console = Console()
    page = open_page(browser, console)
    sign_in(page, live_server.url, "carol")
    page.goto(f"{live_server.url}/albums/{album.pk}/")
    grid = "#photo-grid .tile"
    # Click the first checkbox, shift-click the fifth: a range of five.
    page.locator(f"{grid} .pick").nth(0).click()
    page.locator(f"{grid} .pick").nth(4).click(modifiers=["Shift"])
    page.locator("#bulk-count").filter(has_text="5 photos selected").wait_for()
    # While selecting, a click on a photo adds it instead of opening the viewer.
    page.locator(f"{grid} a.open").nth(7).click()
    page.locator("#bulk-count").filter(has_text="6 photos selected").wait_for()
    assert page.locator(".pswp").count() == 0
    chosen = [ids[i] for i in (0, 1, 2, 3, 4, 7)]
    page.locator("#bulk-delete").click()
    assert page.locator("#bulk-dialog-title").inner_text() == "Delete 6 photos?"
    page.locator("#bulk-dialog-ok").click()
    page.locator("#bulk-count").filter(has_text="Deleted 6 photos.").wait_for()
    assert set(tile_ids(page)) == {str(i) for i in ids} - {str(i) for i in chosen}
    assert set(Image.objects.filter(album=album).values_list("pk", flat=True)) == set(ids) - set(chosen)
    assert page.locator("#grid-count").inner_text() == "6 photos"
    # Cancel deletes nothing.
    page.locator(f"{grid} .pick").nth(0).click()
    page.locator("#bulk-delete").click()
    page.get_by_role("button", name="Cancel").click()
    assert Image.objects.filter(album=album).count() == 6
    assert console.errors == []


def test_search_results_scroll_on_and_keep_their_query_through_back_and_reload(live_server, browser, make_user, tmp_path):
    carol = make_user("carol")
    album, ids = photo_album(carol, name="Search me", count=130)
    console = Console()
    page = open_page(browser, console)
    sign_in(page, live_server.url, "carol")
    # The bar on the album page takes an image: it is carried to the search page and searched.
    picked = tmp_path / "picked.jpg"
    picked.write_bytes(Image.objects.get(pk=ids[3]).file.read())
    page.goto(f"{live_server.url}/albums/{album.pk}/")
    page.set_input_files("#bar-image", str(picked))
    page.wait_for_url(f"**/albums/{album.pk}/search/")
    page.locator("#q-image-chip").filter(has_text="picked.jpg").wait_for()
    # Searched at once (this album's encoder has no weights here, so the answer is that message).
    page.wait_for_function("""() => { const t = document.getElementById('search-status').textContent;
                                      return t && !t.startsWith('Searching'); }""")
    console.errors.clear()  # the browser logs that refused request; nothing else may
    # An album photo as the query (the viewer's "Search with this photo" link), in the address.
    query = ids[5]
    page.goto(f"{live_server.url}/albums/{album.pk}/search/?image_id={query}&min_score=-1&max_results=120")
    page.locator("#search-status").filter(has_text="120 results, 50 shown").wait_for()
    assert page.locator("#weights").is_hidden()  # one part: no weights to adjust
    first = tile_ids(page, "#search-results .tile")[0]
    assert first == str(query)  # the query image itself scores 1
    # Endless past the first 50.
    page.mouse.wheel(0, 100_000)
    page.wait_for_function("() => document.querySelectorAll('#search-results .tile').length >= 100")
    page.mouse.wheel(0, 100_000)
    page.wait_for_function("() => document.querySelectorAll('#search-results .tile').length === 120")
    assert len(set(tile_ids(page, "#search-results .tile"))) == 120
    # Leave for a photo's page and come Back: the same query, searched again.
    page.goto(f"{live_server.url}/images/{query}/")
    page.go_back()
    page.locator("#search-status").filter(has_text="120 results").wait_for()
    assert tile_ids(page, "#search-results .tile")[0] == str(query)
    page.reload()
    page.locator("#search-status").filter(has_text="120 results").wait_for()
    assert f"image_id={query}" in page.url
    # Select all selects every result, the pages not yet shown included.
    page.locator("#search-results .tile .pick").first.click()
    page.locator("#bulk-all").click()
    page.locator("#bulk-count").filter(has_text="120 photos selected").wait_for()
    assert console.errors == []


def test_labels_show_on_tiles_filter_the_grid_and_restrict_a_search(live_server, browser, make_user):
    from search.rag.models import Label, SupportClass, SupportImage, SupportSet
    from workers.models import IndexJob

    carol = make_user("carol")
    album, ids = photo_album(carol, name="Wardrobe", count=8)
    clothes = SupportSet.objects.create(album=album, name="clothes", encoder_spec="dense:efficientnet-lite0")
    coat, hat = (SupportClass.objects.create(support_set=clothes, label=label) for label in ("coat", "hat"))
    for image_id, cls, state in ((ids[1], coat, "predicted"), (ids[2], coat, "accepted"), (ids[3], hat, "rejected")):
        Label.objects.create(image_id=image_id, support_set=clothes, support_class=cls, label=cls.label,
                             predicted_label=cls.label, scores={}, margin=0.25, state=state)
    console = Console()
    page = open_page(browser, console)
    sign_in(page, live_server.url, "carol")
    page.goto(f"{live_server.url}/albums/{album.pk}/")
    # A prediction and a reviewed label look apart; a rejected one is no chip at all.
    assert page.locator(f'.tile[data-id="{ids[1]}"] .label-chip.predicted').inner_text() == "coat"
    assert page.locator(f'.tile[data-id="{ids[2]}"] .label-chip.accepted').inner_text() == "coat"
    assert page.locator(f'.tile[data-id="{ids[3]}"] .label-chip').count() == 0
    # The filter goes into the address and keeps to one set's class.
    page.select_option("#label-filter", "coat")
    page.wait_for_url(f"**support_set={clothes.pk}**")
    assert "label=coat" in page.url
    assert sorted(tile_ids(page)) == sorted([str(ids[1]), str(ids[2])])
    # The viewer's info lists the photo's labels.
    page.locator(f'.tile[data-id="{ids[1]}"] a.open').click()
    page.locator(".pswp[data-ready]").wait_for()
    page.keyboard.press("i")
    page.locator(".pswp-info .facts").filter(has_text="predicted, margin 0.25").wait_for()
    assert "clothes" in page.locator(".pswp-info .facts").inner_text()
    page.keyboard.press("Escape")
    # Search restricted to "coat": only the two coats, whatever else is nearer the query.
    page.goto(f"{live_server.url}/albums/{album.pk}/search/?image_id={ids[5]}&min_score=-1")
    page.locator("#search-status").filter(has_text="8 results").wait_for()
    page.locator("#adjust summary").click()
    page.select_option("#only-label", f"{clothes.pk}:coat")
    page.locator("#search-form button[type=submit]").click()
    page.locator("#search-status").filter(has_text="2 results labeled coat").wait_for()
    assert sorted(tile_ids(page, "#search-results .tile")) == sorted([str(ids[1]), str(ids[2])])
    assert page.locator("#search-results .label-chip").count() == 2
    assert f"only_label={clothes.pk}%3Acoat" in page.url
    # The result, selected whole, labeled with the set: a job for those photos (nothing to do, both
    # are labeled), and its link opens the review on them.
    SupportImage.objects.create(support_class=coat, support_set=clothes, image_id=ids[0], status="ready")
    page.locator("#search-results .tile .pick").first.click()
    page.locator("#bulk-all").click()
    page.locator("#bulk-count").filter(has_text="2 photos selected").wait_for()
    page.locator("#bulk-label").click()
    page.select_option("#bulk-dialog-choice", str(clothes.pk))
    page.locator("#bulk-dialog-ok").click()
    page.locator("#bulk-count").filter(has_text="The set has labeled them already").wait_for()
    job = IndexJob.objects.get(kind="label", params__support_set_id=clothes.pk)
    assert sorted(job.params["image_ids"]) == sorted([ids[1], ids[2]])
    page.get_by_role("link", name="review them").click()
    page.locator("#review-status").filter(has_text="2 labels").wait_for()
    assert page.locator("#review-job").input_value() == str(job.pk)
    assert console.errors == []


PAGES = {
    "albums": "/",
    "album": "/albums/{album}/",
    "search": "/albums/{album}/search/?image_id={image}&min_score=-1",
    "duplicates": "/albums/{album}/duplicates/",
    "map": "/albums/{album}/map/",
    "classify": "/albums/{album}/support-sets/",
    "support-set": "/support-sets/{support_set}/",
    "classify-image": "/support-sets/{support_set}/classify/",
    "members": "/albums/{album}/members/",
    "settings": "/albums/{album}/settings/",
    "photo": "/images/{image}/",
    "jobs": "/jobs/",
    "tokens": "/account/tokens/",
    "password": "/accounts/password/",
}


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_every_page_fits_the_screen_and_logs_no_error(live_server, browser, make_user, viewport):
    carol = make_user("carol")
    album, ids = photo_album(carol, name="A rather long album name that has to wrap on a phone", count=20)
    from search.rag import services as rag_services

    support_set = rag_services.support_set_create(album=album, user=carol, name="Kinds of blue",
                                                  encoder_spec="dense:efficientnet-lite0")
    rag_services.support_class_create(support_set=support_set, label="navy")
    console = Console()
    page = open_page(browser, console, viewport)
    page.goto(f"{live_server.url}/accounts/login/")
    suffix = "-phone" if viewport is PHONE else ""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"login{suffix}.png"), full_page=True)
    sign_in(page, live_server.url, "carol")
    overflow = {}
    for name, path in PAGES.items():
        response = page.goto(live_server.url + path.format(album=album.pk, image=ids[0], support_set=support_set.pk))
        assert response.status == 200, name
        page.wait_for_load_state("networkidle")
        width = page.evaluate("document.documentElement.scrollWidth")
        if width > viewport["width"]:
            overflow[name] = width
        page.screenshot(path=str(SCREENSHOTS / f"{name}{suffix}.png"), full_page=True)
    assert overflow == {}, f"pages wider than {viewport['width']} px: {overflow}"
    if viewport is PHONE:
        # The navigation folds behind Menu.
        assert page.locator("#main-nav").is_hidden()
        page.get_by_role("button", name="Menu").click()
        assert page.get_by_role("link", name="Albums", exact=True).is_visible()
        # Three photos a row.
        page.goto(f"{live_server.url}/albums/{album.pk}/")
        tops = page.eval_on_selector_all("#photo-grid .tile", "(els) => els.slice(0, 4).map((e) => e.getBoundingClientRect().top)")
        assert tops[0] == tops[1] == tops[2] < tops[3]
    assert console.errors == []
