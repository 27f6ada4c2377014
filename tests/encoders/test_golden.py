"""Real pretrained text-image weights, when an operator has placed them: does text find the photo?"""

import numpy as np
import pytest
from django.conf import settings

from encoders.registry import get_encoder
from encoders.spec import EncoderSpec
from encoders.weights import expected_location, find_weights

GOLDEN_SPECS = [
    "open-clip:ViT-B-32/laion2b_s34b_b79k",
    "openai-clip:ViT-B/32",
    "siglip:google/siglip2-base-patch16-224",
    "siglip:google/siglip-base-patch16-224",
]


@pytest.mark.golden
@pytest.mark.parametrize("spec", GOLDEN_SPECS)
def test_text_ranks_the_matching_photo_first(spec):
    parsed = EncoderSpec.parse(spec)
    if find_weights(parsed, import_libraries=True) is None:
        pytest.skip(f"{spec}: weights absent; put them at {expected_location(parsed).describe()} (LOUPE_MODELS_DIR={settings.LOUPE_MODELS_DIR})")
    data = pytest.importorskip("skimage.data", reason="scikit-image (requirements/test.txt) provides the sample photos")
    from PIL import Image

    photos = [Image.fromarray(getattr(data, n)()) for n in ("chelsea", "coffee", "astronaut", "rocket")]
    queries = ["a photo of a cat", "a cup of coffee", "an astronaut", "a rocket on a launch pad"]
    encoder = get_encoder(spec, device="cpu")
    scores = encoder.calibrate_similarity(encoder.encode_texts(queries) @ encoder.encode_images(photos).T)
    assert scores.argmax(axis=1).tolist() == [0, 1, 2, 3]
    assert np.all(scores.diagonal() >= encoder.default_min_score)
