"""The album header's template helpers: what the search bar offers and who sees which buttons, from
the album row alone; which files the viewer shows as they are."""

from types import SimpleNamespace

import pytest

from albums.forms import encoder_choices, flat_choices
from albums.templatetags.album_ui import album_bar, viewable_in_browser


def album(spec: str, role: str | None, active_model_id: str = ""):
    return SimpleNamespace(encoder_spec=spec, active_model_id=active_model_id, role=role)


@pytest.mark.parametrize(("role", "can_edit", "is_owner"), [("viewer", False, False), ("editor", True, False),
                                                            ("owner", True, True), (None, False, False)])
def test_the_bar_follows_the_role(role, can_edit, is_owner):
    bar = album_bar(album("open-clip:ViT-B-32/laion2b_s34b_b79k", role))
    assert (bar["can_edit"], bar["is_owner"]) == (can_edit, is_owner)
    assert bar["text"] and bar["image"]


def test_the_bar_asks_the_model_search_uses_not_the_one_being_built():
    # A rebuild toward a CLIP model is under way; search still uses the image-only DINOv2 vectors.
    bar = album_bar(album("open-clip:ViT-B-32/laion2b_s34b_b79k", "owner",
                          active_model_id="dense:dinov2-small@sha256:0123456789ab"))
    assert bar == {"text": False, "image": True, "can_edit": True, "is_owner": True}


def test_a_spec_no_longer_known_still_renders_a_header():
    assert album_bar(album("nope:gone", "viewer"))["image"] is True


@pytest.mark.parametrize(("mime", "shown"), [("image/jpeg", True), ("image/webp", True), ("image/heic", False),
                                             ("image/tiff", False)])
def test_the_viewer_shows_what_browsers_decode(mime, shown):
    assert viewable_in_browser(SimpleNamespace(mime=mime)) is shown


def test_missing_encoders_say_whether_they_download(settings):
    settings.LOUPE_ALLOW_DOWNLOADS = True
    groups = dict(encoder_choices()[:-1])
    assert "Needs download (downloads on first use)" in groups
    settings.LOUPE_ALLOW_DOWNLOADS = False
    groups = encoder_choices()
    assert [name for name, _ in groups[:2]] == ["Installed", "Needs download (downloads are off: an operator places the weights)"]
    # The album's own spec stays selectable even when the catalog does not list it.
    custom = encoder_choices("open-clip:ViT-B-16/some-local-checkpoint")
    assert custom[0] == ("This album's", [("open-clip:ViT-B-16/some-local-checkpoint",) * 2])
    assert flat_choices(custom)[0][0] == "open-clip:ViT-B-16/some-local-checkpoint"
