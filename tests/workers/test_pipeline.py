"""The decode pool runs ahead of the encoder, but only so far; bad files come back as reasons."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from tests.images import noise_png, truncated
from tests.tiny_models import OPEN_CLIP_TINY
from workers import pipeline


class CountingPool(ThreadPoolExecutor):
    def __init__(self):
        super().__init__(max_workers=2)
        self.submitted = 0

    def submit(self, *args, **kwargs):
        self.submitted += 1
        return super().submit(*args, **kwargs)


class WatchingEncoder:
    """Wraps the real encoder and records how far decoding had got at each forward pass."""

    def __init__(self, encoder, pool):
        self.encoder, self.pool, self.dim = encoder, pool, encoder.dim
        self.seen = 0
        self.lead: list[int] = []

    def encode_images(self, images, batch_size=None):
        self.lead.append(self.pool.submitted - self.seen)
        self.seen += len(images)
        return self.encoder.encode_images(images, batch_size=batch_size)


def test_read_ahead_is_bounded_and_order_and_failures_kept(settings, tiny_models_dir, tmp_path):
    from encoders.registry import get_encoder

    settings.MEDIA_ROOT = tmp_path
    settings.LOUPE_MODELS_DIR = tiny_models_dir
    settings.LOUPE_DEVICE = "cpu"
    items = []
    for i in range(40):
        data = noise_png(size=(40, 40), seed=i)
        if i == 13:
            data = truncated(data)
        items.append((1000 + i, default_storage.save(f"img/{i}.png", ContentFile(data))))
    items.append((2000, "img/missing.png"))
    pool = CountingPool()
    encoder = WatchingEncoder(get_encoder(OPEN_CLIP_TINY), pool)
    result = pipeline.embed_stored_images(encoder, items, pool=pool, micro_batch=8)
    pool.shutdown()

    assert set(result.failures) == {1013, 2000}
    assert "decode" in result.failures[1013] and "missing" in result.failures[2000]
    assert result.image_ids == [image_id for image_id, _ in items if image_id not in (1013, 2000)]
    assert result.vectors.shape == (39, encoder.dim)
    assert np.allclose(np.linalg.norm(result.vectors, axis=1), 1, atol=1e-5)
    # Never more than READ_AHEAD_BATCHES micro-batches decoded beyond what the encoder took.
    assert max(encoder.lead) <= pipeline.READ_AHEAD_BATCHES * 8 + 8
