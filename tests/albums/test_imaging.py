import io
from datetime import datetime, timezone

import pytest
from PIL import Image

from albums.imaging import ImageRejected, clean_filename, make_thumbnail, probe_image, read_metadata
from encoders.images import to_rgb
from tests.images import image_bytes, jpeg_with_exif, png_bomb, truncated


def test_probe_reads_format_size_and_hash():
    data = image_bytes("PNG", size=(30, 20))
    probed = probe_image(io.BytesIO(data))
    assert (probed.format, probed.mime, probed.width, probed.height, probed.bytes) == ("PNG", "image/png", 30, 20, len(data))
    import hashlib

    assert probed.sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    "data,code",
    [
        (b"", "empty_file"),
        (b"hello world", "not_an_image"),
        (truncated(image_bytes(size=(300, 200))), "corrupt_image"),
        (png_bomb(), "too_many_pixels"),
    ],
)
def test_probe_rejects_with_codes(data, code):
    with pytest.raises(ImageRejected) as caught:
        probe_image(io.BytesIO(data))
    assert caught.value.code == code
    assert caught.value.reason


@pytest.mark.parametrize("fmt,mode", [("PNG", "RGBA"), ("PNG", "LA"), ("PNG", "I;16"), ("JPEG", "CMYK"), ("GIF", "P"), ("WEBP", "RGB"), ("TIFF", "RGB"), ("BMP", "RGB")])
def test_probe_accepts_many_modes_and_formats(fmt, mode):
    color = {"RGBA": (10, 20, 30, 0), "LA": (100, 128), "I;16": 40000, "CMYK": (0, 50, 100, 0), "P": 3}.get(mode, (1, 2, 3))
    image = Image.new(mode, (16, 12), color)
    out = io.BytesIO()
    image.save(out, format=fmt)
    probed = probe_image(io.BytesIO(out.getvalue()))
    assert (probed.width, probed.height) == (16, 12)


def test_to_rgb_composites_alpha_on_white_and_scales_16_bit():
    rgba = Image.new("RGBA", (2, 2), (255, 0, 0, 0))
    assert to_rgb(rgba).getpixel((0, 0)) == (255, 255, 255)
    grey16 = Image.new("I;16", (2, 2), 65535)
    assert to_rgb(grey16).getpixel((0, 0)) == (255, 255, 255)
    cmyk = Image.new("CMYK", (2, 2), (0, 0, 0, 0))
    assert to_rgb(cmyk).mode == "RGB"


@pytest.mark.parametrize("orientation,expected", [(1, (80, 40)), (3, (80, 40)), (6, (40, 80)), (8, (40, 80))])
def test_metadata_corrects_orientation_and_reads_exif(orientation, expected):
    meta = read_metadata(io.BytesIO(jpeg_with_exif(orientation=orientation)))
    assert (meta.width, meta.height) == expected
    assert meta.taken_at == datetime(2021, 7, 4, 12, 30, tzinfo=timezone.utc)
    assert meta.camera == "Canon EOS R5"
    assert meta.exif["Orientation"] == orientation


def test_broken_exif_is_ignored_not_fatal():
    data = bytearray(jpeg_with_exif())
    start = data.find(b"Exif\x00\x00")
    data[start + 10 : start + 40] = b"\xff" * 30  # trash the IFD
    meta = read_metadata(io.BytesIO(bytes(data)))
    assert meta.width > 0 and meta.height > 0


def test_thumbnail_is_bounded_upright_webp():
    thumb = Image.open(io.BytesIO(make_thumbnail(io.BytesIO(jpeg_with_exif(orientation=6, size=(800, 400))), size=100)))
    assert thumb.format == "WEBP"
    assert thumb.size == (50, 100)


@pytest.mark.parametrize(
    "raw,clean",
    [("a/b/c.jpg", "c.jpg"), ("..\\..\\win.png", "win.png"), ("", "unnamed"), ("bad\x00name\n.jpg", "badname.jpg"), (".hidden.jpg", "hidden.jpg")],
)
def test_clean_filename(raw, clean):
    assert clean_filename(raw) == clean
