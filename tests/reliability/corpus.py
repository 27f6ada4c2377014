"""A generated corpus of bad, odd and good image files, each with the outcome Loupe must give it.

`corpus()` returns `Case`s: the file name a client sends, the bytes, and what the upload must
answer (`created`, `duplicate`, or `rejected` with a code). Everything is made here, in memory and
deterministically, so the corpus needs no fixtures on disk and every run sends the same bytes.
`docs/reliability.md` lists the kinds with their outcomes.
"""

from __future__ import annotations

import functools
import io
import struct
import zlib
from dataclasses import dataclass

from PIL import Image

from tests.images import noise_png, png_bomb

# The corpus runs with this per-file limit, so one file can be over it without a 100 MB request.
UPLOAD_LIMIT = 256 * 1024


@dataclass(frozen=True)
class Case:
    kind: str  # the test id and the row in docs/reliability.md
    name: str  # what the client calls the file
    data: bytes
    status: str  # created | duplicate | rejected
    code: str = ""  # the rejection code
    stored_name: str = ""  # the name Loupe keeps, when it differs from `name`
    upright_size: tuple[int, int] | None = None  # (width, height) after EXIF orientation, when checked


def _save(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def _picture(size=(64, 48), seed: int = 0, mode: str = "RGB") -> Image.Image:
    """A small image with structure; `seed` makes each case's bytes (and hash) its own."""
    width, height = size
    image = Image.new("RGB", size, ((seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256))
    for x in range(0, width, 4):
        for y in range(0, height, 4):
            image.putpixel((x, y), ((x * 7 + seed) % 256, (y * 5 + seed) % 256, (x + y + seed) % 256))
    return image if mode == "RGB" else image.convert(mode)


def _jpeg(seed: int, size=(64, 48), **options) -> bytes:
    return _save(_picture(size, seed), "JPEG", quality=90, **options)


def _png(seed: int, size=(64, 48), mode: str = "RGB") -> bytes:
    return _save(_picture(size, seed, mode), "PNG")


def _with_orientation(orientation: int, seed: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _save(_picture((80, 40), seed), "JPEG", exif=exif)


def _broken_exif_jpeg(seed: int) -> bytes:
    """A JPEG whose APP1 segment says Exif but holds a TIFF header pointing past its own end."""
    data = _jpeg(seed)
    garbage = b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 0xFFFFFF00) + b"\xde\xad\xbe\xef" * 8
    segment = b"\xff\xe1" + struct.pack(">H", len(garbage) + 2) + garbage
    return data[:2] + segment + data[2:]


def _png_bad_crc(seed: int) -> bytes:
    data = bytearray(_png(seed))
    idat = data.index(b"IDAT")
    length = struct.unpack(">I", data[idat - 4 : idat])[0]
    crc_at = idat + 4 + length
    data[crc_at : crc_at + 4] = b"\x00\x00\x00\x00"
    return bytes(data)


def _png_corrupt_idat(seed: int) -> bytes:
    """Compressed pixel data overwritten in the middle: zlib fails part-way through the image."""
    data = bytearray(_png(seed, (64, 64)))
    idat = data.index(b"IDAT")
    length = struct.unpack(">I", data[idat - 4 : idat])[0]
    middle = idat + 4 + length // 2
    data[middle : middle + 16] = b"\xff" * 16
    return bytes(data)


def _png_corrupt_header() -> bytes:
    """The PNG signature, then an IHDR whose CRC and fields are nonsense."""
    ihdr = struct.pack(">IIBBBBB", 0, 0, 99, 99, 9, 9, 9)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + b"\x00\x00\x00\x00" + b"\x00" * 32


def _gif_bomb() -> bytes:
    """A GIF whose header claims 65535×65535 pixels, a few hundred bytes long."""
    image = Image.new("P", (1, 1), 0)
    data = bytearray(_save(image, "GIF"))
    data[6:10] = struct.pack("<HH", 65535, 65535)  # logical screen
    descriptor = data.index(b"\x2c")  # image descriptor: left, top, width, height
    data[descriptor + 5 : descriptor + 9] = struct.pack("<HH", 65535, 65535)
    return bytes(data)


def _animated(fmt: str, seed: int) -> bytes:
    frames = [_picture((32, 32), seed + i) for i in range(3)]
    if fmt == "GIF":
        frames = [f.convert("P") for f in frames]
    return _save(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)


def _palette_with_transparency(seed: int) -> bytes:
    image = _picture((32, 32), seed).convert("P")
    return _save(image, "PNG", transparency=0)


def _cmyk_jpeg(seed: int) -> bytes:
    return _save(_picture((40, 30), seed).convert("CMYK"), "JPEG")


def _png_16_bit(seed: int) -> bytes:
    image = Image.new("I;16", (40, 30))
    image.putdata([(x * 1500 + seed) % 65536 for x in range(40 * 30)])
    return _save(image, "PNG")


def _float_tiff(seed: int) -> bytes:
    image = Image.new("F", (20, 10))
    image.putdata([float(x + seed) / 7.0 for x in range(200)])
    return _save(image, "TIFF")


def _heic(seed: int) -> bytes:
    import pillow_heif

    image = _picture((64, 48), seed)
    heif = pillow_heif.from_pillow(image)
    out = io.BytesIO()
    heif.save(out, quality=80)
    return out.getvalue()


def _zip_bytes() -> bytes:
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("photo.jpg", b"not really")
    return out.getvalue()


def _ico(seed: int) -> bytes:
    return _save(_picture((32, 32), seed), "ICO")


def _raw_deflate_png_header_only(width: int, height: int) -> bytes:
    """A valid PNG header for width×height and one empty IDAT: damaged, not a bomb, when small."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


LONG_NAME = ("a" * 600) + ".jpg"


@functools.cache  # a few seconds to make (the bombs, HEIC, AVIF); cases are frozen, so share them
def corpus() -> tuple[Case, ...]:
    good = _jpeg(1)
    cases = [
        # --- Nothing usable in the file
        Case("zero-byte", "empty.jpg", b"", "rejected", "empty_file"),
        Case("text-as-jpg", "notes.jpg", b"just some text, not pixels\n" * 4, "rejected", "not_an_image"),
        Case("html-as-jpg", "page.jpg", b"<!doctype html><html><body><img src=x onerror=alert(1)></body></html>",
             "rejected", "not_an_image"),
        Case("svg-as-jpg", "vector.jpg", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
             b'<script>alert(1)</script></svg>', "rejected", "not_an_image"),
        Case("pdf-as-jpg", "doc.jpg", b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n", "rejected", "not_an_image"),
        Case("zip-as-jpg", "archive.jpg", _zip_bytes(), "rejected", "not_an_image"),
        # --- Damaged images
        Case("truncated-jpeg", "cut.jpg", _jpeg(2, (300, 200))[:3000], "rejected", "corrupt_image"),
        Case("truncated-png", "cut.png", _png(3, (200, 150))[:5000], "rejected", "corrupt_image"),
        Case("truncated-gif", "cut.gif", _save(_picture((120, 90), 4).convert("P"), "GIF")[:400], "rejected", "corrupt_image"),
        Case("truncated-webp", "cut.webp", _save(_picture((120, 90), 5), "WEBP")[:300], "rejected", "corrupt_image"),
        Case("corrupt-jpeg-header", "header.jpg", b"\xff\xd8\xff\xe0" + b"\x00" * 64, "rejected", "corrupt_image"),
        Case("corrupt-png-header", "header.png", _png_corrupt_header(), "rejected", "corrupt_image"),
        Case("png-corrupt-pixel-data", "idat.png", _png_corrupt_idat(6), "rejected", "corrupt_image"),
        Case("png-header-without-data", "hollow.png", _raw_deflate_png_header_only(64, 64), "rejected", "corrupt_image"),
        # --- Too big to decode safely, or too big to send
        Case("decompression-bomb-png", "bomb.png", png_bomb(), "rejected", "too_many_pixels"),
        Case("decompression-bomb-gif", "bomb.gif", _gif_bomb(), "rejected", "too_many_pixels"),
        Case("over-upload-limit", "huge.png", noise_png(size=(320, 320), seed=7), "rejected", "file_too_large"),
        # A strip this long costs the indexer's resize gigabytes (measured; see docs/reliability.md).
        Case("aspect-4000x1", "wide.png", _png(13, (4000, 1)), "rejected", "extreme_aspect_ratio"),
        Case("aspect-1x4000", "tall.png", _png(14, (1, 4000)), "rejected", "extreme_aspect_ratio"),
        # --- Formats Loupe does not take
        Case("ico", "favicon.jpg", _ico(8), "rejected", "unsupported_format"),
        # --- Odd but valid: stored, and indexed later
        Case("png-named-jpg", "really-a-png.jpg", _png(9), "created"),
        Case("jpeg-named-png", "really-a-jpeg.png", _jpeg(10), "created"),
        # Only the chunk checksum is wrong: zlib's own check passes and every pixel decodes, as in browsers.
        Case("png-bad-crc", "crc.png", _png_bad_crc(6), "created"),
        Case("jpeg-with-trailing-garbage", "trailing.jpg", _jpeg(11) + b"\x00garbage after EOI" * 20, "created"),
        Case("one-by-one", "dot.png", _png(12, (1, 1)), "created"),
        Case("aspect-50x1-panorama", "panorama.png", _png(13, (2000, 40)), "created"),
        Case("png-16-bit", "deep.png", _png_16_bit(15), "created"),
        Case("cmyk-jpeg", "print.jpg", _cmyk_jpeg(16), "created"),
        Case("grey-jpeg", "grey.jpg", _save(_picture((40, 30), 17, "L"), "JPEG"), "created"),
        Case("palette-transparency", "logo.png", _palette_with_transparency(18), "created"),
        Case("la-png", "la.png", _png(19, mode="LA"), "created"),
        Case("rgba-png", "rgba.png", _png(20, mode="RGBA"), "created"),
        Case("float-tiff", "float.tif", _float_tiff(21), "created"),
        Case("bmp", "old.bmp", _save(_picture((30, 20), 22), "BMP"), "created"),
        Case("animated-gif", "anim.gif", _animated("GIF", 23), "created"),
        Case("animated-webp", "anim.webp", _animated("WEBP", 26), "created"),
        Case("heic", "phone.heic", _heic(29), "created"),
        Case("avif", "modern.avif", _save(_picture((64, 48), 30), "AVIF"), "created"),
        Case("broken-exif", "broken-exif.jpg", _broken_exif_jpeg(31), "created"),
        *[
            Case(f"exif-orientation-{o}", f"orientation-{o}.jpg", _with_orientation(o, 40 + o), "created",
                 upright_size=(40, 80) if o >= 5 else (80, 40))
            for o in range(1, 9)
        ],
        Case("exif-orientation-out-of-range", "orientation-99.jpg", _with_orientation(99, 49), "created",
             upright_size=(80, 40)),
        # --- Hostile names: the name is cleaned for display; the storage path comes from the hash
        Case("unicode-name", "Ｐhoto 日本 🎉 é.jpg", _jpeg(50), "created", stored_name="Ｐhoto 日本 🎉 é.jpg"),
        Case("long-name", LONG_NAME, _jpeg(51), "created", stored_name=("a" * 251) + ".jpg"),
        Case("path-traversal-name", "../../../etc/passwd.jpg", _jpeg(52), "created", stored_name="passwd.jpg"),
        Case("windows-path-name", "C:\\Users\\x\\..\\evil.jpg", _jpeg(53), "created", stored_name="evil.jpg"),
        Case("control-chars-name", "bell\x07\x1bname.jpg", _jpeg(54), "created", stored_name="bellname.jpg"),
        Case("dot-name", "....", _jpeg(55), "created", stored_name="unnamed"),
        # --- The same bytes twice in one request: stored once
        Case("good", "good.jpg", good, "created"),
        Case("duplicate-in-request", "good-again.jpg", good, "duplicate"),
    ]
    kinds = [c.kind for c in cases]
    assert len(kinds) == len(set(kinds)), "corpus kinds must be unique"
    return tuple(cases)
