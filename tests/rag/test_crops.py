"""Evidence crops (search/rag/crops.py): decoded at a reduced JPEG scale when the crop is shown
smaller than the box, and still the same picture as a full decode would give."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from encoders.images import open_rgb
from search.rag.crops import crop_patch
from tests.rag.conftest import photo


def big_jpeg(*, orientation: int = 1) -> bytes:
    picture = photo("astronaut").resize((2048, 1536), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = orientation
    picture.save(out, format="JPEG", quality=92, exif=exif.tobytes())
    return out.getvalue()


def full_decode_crop(data: bytes, box, size: int) -> Image.Image:
    """The definition: decode everything upright, crop the box, shrink to `size`."""
    crop = open_rgb(io.BytesIO(data)).crop(box)
    crop.thumbnail((size, size), Image.Resampling.LANCZOS)
    return crop


def mean_abs_diff(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).mean())


@pytest.mark.parametrize("orientation", [1, 6, 8, 3])
def test_a_reduced_scale_crop_is_the_same_picture_as_a_full_decode(orientation):
    data = big_jpeg(orientation=orientation)
    upright = open_rgb(io.BytesIO(data)).size
    box = (upright[0] // 4, upright[1] // 3, upright[0] // 4 + 600, upright[1] // 3 + 450)
    got = crop_patch(io.BytesIO(data), ",".join(map(str, box)), size=128)
    expected = full_decode_crop(data, box, 128)
    assert max(got.size) == 128 and abs(got.size[0] - expected.size[0]) <= 1 and abs(got.size[1] - expected.size[1]) <= 1
    assert mean_abs_diff(got.resize(expected.size), expected) < 4.0


def test_a_box_smaller_than_the_size_is_cropped_at_full_scale_and_never_upscaled():
    data = big_jpeg()
    box = (100, 200, 180, 260)
    got = crop_patch(io.BytesIO(data), "100,200,180,260", size=256)
    assert got.size == (80, 60)
    assert mean_abs_diff(got, full_decode_crop(data, box, 256)) == 0.0


@pytest.mark.parametrize("size", [40, 100])
def test_a_box_at_the_far_edge_of_an_odd_sized_photo_has_no_padded_edge(size):
    """1519 px is no multiple of the DCT scales: the scaled box must not run past the decoded picture."""
    out = io.BytesIO()
    Image.new("RGB", (1519, 1519), (200, 200, 200)).save(out, format="JPEG", quality=95)
    got = np.asarray(crop_patch(io.BytesIO(out.getvalue()), "1302,1302,1519,1519", size=size),
                     dtype=np.int16)
    assert got.shape[:2] == (size, size)
    assert np.abs(got - 200).max() <= 3  # every edge row and column included


def test_png_decodes_in_full_and_matches():
    out = io.BytesIO()
    photo("coffee").save(out, format="PNG")
    got = crop_patch(io.BytesIO(out.getvalue()), "0,0,400,300", size=100)
    assert mean_abs_diff(got, full_decode_crop(out.getvalue(), (0, 0, 400, 300), 100)) == 0.0


def test_a_box_outside_the_upright_image_is_refused():
    from config.errors import ApplicationError

    data = big_jpeg(orientation=6)  # stored 2048×1536, upright 1536×2048
    with pytest.raises(ApplicationError, match="1536×2048"):
        crop_patch(io.BytesIO(data), "0,0,2000,100", size=128)


def test_shifted_boxes_would_be_caught():
    """The tolerance above is far below what a box off by a few percent of the photo gives."""
    data = big_jpeg()
    right = full_decode_crop(data, (512, 512, 1112, 962), 128)
    shifted = full_decode_crop(data, (560, 540, 1160, 990), 128)
    assert mean_abs_diff(right, shifted) > 12.0


@pytest.mark.django_db
def test_the_crop_endpoint_takes_a_size_and_checks_it(two_class_set, alice, client_for):
    from search.rag.models import SupportImage

    api = client_for(alice)
    example = SupportImage.objects.filter(support_class_id=two_class_set["classes"]["cat"]).get()
    url = f"/api/v1/support-images/{example.pk}/crop"
    small = api.get(url, {"box": "0,0,300,200", "size": 64})
    assert small.status_code == 200 and small["Content-Type"] == "image/webp"
    width, height = Image.open(io.BytesIO(small.content)).size
    assert width == 64 and height in (42, 43)  # 300×200 at 64 px wide, rounded either way
    default = Image.open(io.BytesIO(api.get(url, {"box": "0,0,300,200"}).content))
    assert default.size[0] == 256 and default.size[1] in (170, 171)
    for bad in ("abc", "8", "5000"):
        refused = api.get(url, {"box": "0,0,300,200", "size": bad})
        assert refused.status_code == 400 and refused.json()["code"] == "invalid_size", bad
