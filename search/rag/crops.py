"""Evidence crops at display size, without decoding the whole photo at full size.

A patch box is in the original image's upright pixels; a 7×7 grid on a 4000×3000 photo makes
boxes of ~570 px, shown at ~100 px. JPEG can decode at 1/2, 1/4 or 1/8 scale (DCT scaling), so the
photo is decoded at the smallest scale that still gives the crop `size` pixels a side, and the box
is scaled to match. Other formats decode in full.
"""

from __future__ import annotations

import math

from PIL import Image
from PIL.JpegImagePlugin import JpegImageFile

from config.errors import ApplicationError
from encoders.images import to_rgb

# EXIF orientations 5–8 turn the image a quarter: the stored width is the upright height.
_QUARTER_TURNS = {5, 6, 7, 8}


def parse_box(text: str, width: int, height: int) -> tuple[int, int, int, int]:
    try:
        x0, y0, x1, y1 = (int(part) for part in text.split(","))
    except ValueError:
        raise ApplicationError("box must be four integers: x0,y0,x1,y1.", code="invalid_box") from None
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise ApplicationError(f"box must lie inside the {width}×{height} image.", code="invalid_box")
    return x0, y0, x1, y1


def crop_patch(fp, box_text: str, *, size: int) -> Image.Image:
    with Image.open(fp) as image:
        orientation = image.getexif().get(0x0112, 1)
        stored_w, stored_h = image.size
        upright_w, upright_h = (stored_h, stored_w) if orientation in _QUARTER_TURNS else (stored_w, stored_h)
        x0, y0, x1, y1 = parse_box(box_text, upright_w, upright_h)
        scale = min(1.0, size / max(x1 - x0, y1 - y0))
        if isinstance(image, JpegImageFile) and scale < 1.0:  # MPO (phones' JPEGs) included
            image.draft("RGB", (math.ceil(stored_w * scale), math.ceil(stored_h * scale)))
        image.load()
        picture = to_rgb(image)
    fx, fy = picture.width / upright_w, picture.height / upright_h
    # Clamped: a reduced scale rounds the picture's size down, so x1 * fx can land one pixel past it
    # (PIL would pad that column with black).
    left, top = min(math.floor(x0 * fx), picture.width - 1), min(math.floor(y0 * fy), picture.height - 1)
    box = (left, top, min(picture.width, max(left + 1, math.ceil(x1 * fx))),
           min(picture.height, max(top + 1, math.ceil(y1 * fy))))
    crop = picture.crop(box)
    crop.thumbnail((size, size), Image.Resampling.LANCZOS)
    return crop
