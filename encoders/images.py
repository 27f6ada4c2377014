"""Turning whatever Pillow can open into the upright 8-bit RGB image an encoder expects.

Shared by upload probing, thumbnails and every encoder backend, so all of them see the same pixels.
No torch here: the web tier imports this.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageOps

# pillow-heif registers HEIC/AVIF openers with Pillow when present.
try:
    import pillow_heif

    pillow_heif.register_heif_opener()
    HEIF_SUPPORTED = True
except ImportError:  # pragma: no cover - it is in requirements/web.txt
    HEIF_SUPPORTED = False


def to_rgb(image: Image.Image, *, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Apply EXIF orientation, take the first frame, and convert any mode to 8-bit RGB.

    Transparent pixels are composited over `background` rather than dropped to black, so a logo
    on a transparent canvas embeds like the logo people see.
    """
    if getattr(image, "is_animated", False):
        image.seek(0)
    image = ImageOps.exif_transpose(image) or image
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit greyscale: scale to 8 bits instead of clipping everything above 255 to white.
        values = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        grey = np.clip(values * (255.0 / peak), 0, 255).round().astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, background)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB")


# Indexing and query images decode at no less than this (an encoder input is at most 448 px a side):
# one size for both, so a stored image and the same file uploaded as a query embed alike.
ENCODER_DRAFT = (448, 448)


def open_decoded(fp, *, draft_size: tuple[int, int] | None = None, convert: Callable | None = None) -> Image.Image:
    """Open and fully decode an image, then `convert` it (default: to RGB). `draft_size` lets a JPEG
    decode at a reduced scale (DCT scaling) when the caller needs only that many pixels, which is
    several times faster; the one place Loupe decodes that way."""
    with Image.open(fp) as image:
        if draft_size is not None and image.format == "JPEG":
            image.draft("RGB", draft_size)
        image.load()
        return (convert or to_rgb)(image)


def open_rgb(fp, *, draft_size: tuple[int, int] | None = None) -> Image.Image:
    return open_decoded(fp, draft_size=draft_size)
