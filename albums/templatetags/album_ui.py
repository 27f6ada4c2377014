"""What every album page's header needs to know (the search bar, the Index chip) without each view
building it: derived from the album row alone, no extra queries."""

from django import template

from albums.roles import Role, role_at_least
from encoders.model_ids import parse_model_id
from encoders.registry import spec_modalities

register = template.Library()


@register.simple_tag
def album_bar(album) -> dict:
    """Which query parts the album's search model takes (the model search uses now, else the one its
    encoder will build), so the bar offers words only where they can work."""
    spec = parse_model_id(album.active_model_id).spec if album.active_model_id else album.encoder_spec
    try:
        modalities = spec_modalities(spec)
    except Exception:  # an album row with a spec no longer known still renders its header
        modalities = frozenset({"image"})
    role = getattr(album, "role", None)  # set by the access check that loaded the album
    return {"text": "text" in modalities, "image": "image" in modalities,
            "can_edit": bool(role) and role_at_least(role, Role.EDITOR),
            "is_owner": bool(role) and role_at_least(role, Role.OWNER)}


# What browsers show natively; anything else (HEIC, TIFF, ...) opens in the viewer as its upright
# WebP thumbnail rather than as a broken image.
BROWSER_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/webp", "image/gif", "image/avif", "image/bmp"})


@register.filter
def viewable_in_browser(image) -> bool:
    return image.mime in BROWSER_IMAGE_TYPES
