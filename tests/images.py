"""Real image files, good and bad, made on the fly."""

from __future__ import annotations

import functools
import io
import struct
import zlib

from PIL import Image


def image_bytes(fmt: str = "JPEG", size: tuple[int, int] = (64, 48), color=(200, 30, 30), mode: str = "RGB", **save) -> bytes:
    image = Image.new(mode, size, color)
    if mode == "RGB":
        # Some structure, so that different colors give different files and thumbnails mean something.
        for x in range(0, size[0], 8):
            for y in range(0, size[1], 8):
                image.putpixel((x, y), ((x * 7) % 256, (y * 5) % 256, (x + y) % 256))
    out = io.BytesIO()
    image.save(out, format=fmt, **save)
    return out.getvalue()


def jpeg_with_exif(*, orientation: int = 6, size=(80, 40), when="2021:07:04 12:30:00", make="Canon", model="Canon EOS R5") -> bytes:
    image = Image.new("RGB", size, (10, 120, 200))
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation
    exif[0x010F] = make
    exif[0x0110] = model
    exif.get_ifd(0x8769)[0x9003] = when  # DateTimeOriginal
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif)
    return out.getvalue()


@functools.cache
def png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A tiny PNG whose header claims width×height pixels (1-bit, all black): a decompression bomb.

    Written chunk by chunk, once a run: PIL's encoder took ~4 s to pack the 112 MB of pixels, and
    three test modules build one while they are collected."""
    row = b"\0" * (1 + (width + 7) // 8)  # filter type 0, then the row's bits
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row * min(1000, height - top)) for top in range(0, height, 1000))
    data += compressor.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # bit depth 1, greyscale, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    return data[: int(len(data) * keep)]


def noise_png(size=(200, 200), seed: int = 0) -> bytes:
    """Incompressible pixels: a PNG of a predictable, large size."""
    import random

    rng = random.Random(seed)
    image = Image.frombytes("RGB", size, bytes(rng.getrandbits(8) for _ in range(size[0] * size[1] * 3)))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
