"""Search, image and jobs pages: membership checked like the API; image-only albums say why text is off."""

import pytest
from django.test import Client

from albums import services
from albums.models import Album, Image
from workers.models import IndexJob

pytestmark = pytest.mark.django_db


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def image(album, alice):
    return Image.objects.create(album=album, file="x.png", original_name="holiday.png", sha256="a" * 64, bytes=10,
                                mime="image/png", width=4, height=3, exif={"Make": "Canon"}, camera="Canon EOS")


def test_search_page_for_members_with_text_enabled_for_text_encoders(alice, album):
    Album.objects.filter(pk=album.pk).update(encoder_spec="open-clip:ViT-B-32/laion2b_s34b_b79k")
    page = signed_in(alice).get(f"/albums/{album.pk}/search/").content.decode()
    assert 'id="q-text"' in page and "image-only" not in page
    assert 'data-url="/api/v1/albums/%d/search/"' % album.pk in page
    assert 'id="w-image"' in page and 'id="w-negative"' in page and 'value="0.2000"' in page


def test_concept_album_takes_words_and_says_which(alice, album):
    Album.objects.filter(pk=album.pk).update(encoder_spec="dense:efficientnet-lite0")
    page = signed_in(alice).get(f"/albums/{album.pk}/search/").content.decode()
    assert 'id="text-concepts"' in page and "1,000 ImageNet concepts" in page and "image-only" not in page
    assert 'id="q-text"' in page and "This album searches by image" not in page


def test_image_only_album_disables_text_with_a_reason(alice, album):
    Album.objects.filter(pk=album.pk).update(encoder_spec="dense:dinov2-small")
    page = signed_in(alice).get(f"/albums/{album.pk}/search/").content.decode()
    assert "image-only" in page and "switch the encoder in Settings" in page
    assert 'placeholder="This album searches by image: drop, paste or choose one" disabled' in page
    assert "autofocus" not in page  # no focus on a box that cannot be typed in


def test_image_page_shows_exif_and_more_like_this(alice, image):
    page = signed_in(alice).get(f"/images/{image.pk}/").content.decode()
    assert "holiday.png" in page and "Canon EOS" in page and f"/api/v1/images/{image.pk}/similar/" in page
    assert f"?image_id={image.pk}" in page


def test_image_page_has_the_readable_info_for_its_template(alice, image):
    info = signed_in(alice).get(f"/images/{image.pk}/").context["info"]
    assert info == {"camera": "Canon EOS", "lens": None, "exposure": None, "taken": None, "place": None,
                    "size": "4 × 3"}


def test_non_members_get_404_on_search_and_image_pages(bob, album, image):
    client = signed_in(bob)
    assert client.get(f"/albums/{album.pk}/search/").status_code == 404
    assert client.get(f"/images/{image.pk}/").status_code == 404


def test_jobs_page_lists_only_the_users_albums_and_everything_for_staff(alice, bob, make_user, album):
    theirs = services.album_create(owner=bob, name="bob-private")
    IndexJob.objects.create(album=album, kind="index", status="running", total=10, done=3)
    IndexJob.objects.create(album=theirs, kind="index", status="failed", message="weights missing")
    page = signed_in(alice).get("/jobs/").content.decode()
    assert "Alice&#x27;s trip" in page and "bob-private" not in page and "Cancel" in page
    admin = make_user("root", is_staff=True)
    page = signed_in(admin).get("/jobs/").content.decode()
    assert "bob-private" in page and "Flower" in page


def test_album_page_shows_index_status(alice, album):
    IndexJob.objects.create(album=album, kind="rebuild", status="running", total=10, done=4)
    page = signed_in(alice).get(f"/albums/{album.pk}/").content.decode()
    assert 'id="job-progress"' in page and 'value="4"' in page and 'data-active="1"' in page


def test_duplicates_page_for_members_only(alice, bob, album):
    page = signed_in(alice).get(f"/albums/{album.pk}/duplicates/").content.decode()
    assert f"/api/v1/albums/{album.pk}/duplicates/" in page and 'id="threshold"' in page
    assert signed_in(bob).get(f"/albums/{album.pk}/duplicates/").status_code == 404


def test_map_page_for_members_only_and_the_build_button_for_editors(alice, bob, make_user, album, member_of):
    carol = make_user("carol")
    member_of(carol)  # a viewer
    page = signed_in(alice).get(f"/albums/{album.pk}/map/").content.decode()
    assert f'data-url="/api/v1/albums/{album.pk}/map/"' in page and 'id="map-build-button"' in page
    assert 'data-indexed="0"' in page and 'aria-current="page">Map</a>' in page
    assert 'id="map-build-button"' not in signed_in(carol).get(f"/albums/{album.pk}/map/").content.decode()
    assert signed_in(bob).get(f"/albums/{album.pk}/map/").status_code == 404
