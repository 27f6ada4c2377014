"""Words on an EfficientNet-Lite0 album, with nothing downloaded: real photos uploaded through the
API, indexed by the real Celery worker (which stores each image's ImageNet class probabilities beside
its vector), then searched by words that WordNet maps to ImageNet classes (encoders/concepts.py)."""

import io

import numpy as np
import pytest

from albums import services as album_services
from encoders.concepts import concept_index
from tests.conftest import upload_and_index
from tests.test_golden_retrieval import encoded, sample
from search.rag.models import Label, SupportSet
from workers.models import ImageConcepts

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "camera", "coins")


def search(api, album, **body):
    return api.post(f"/api/v1/albums/{album.pk}/search/", body, format="multipart")


@pytest.mark.golden
def test_words_find_the_photo_through_its_concepts(worker, alice, bob, client_for):
    album = album_services.album_create(owner=alice, name="concepts", encoder_spec="dense:efficientnet-lite0")
    api = client_for(alice)
    ids = upload_and_index(api, album, {f"{name}.png": encoded(sample(name), "PNG") for name in PHOTOS})

    # The index job wrote one row of class probabilities per image, under the vectors' model.
    album.refresh_from_db()
    rows = ImageConcepts.objects.filter(album=album)
    assert rows.count() == len(PHOTOS) and set(rows.values_list("model_id", flat=True)) == {album.active_model_id}
    probabilities = {row.image_id: np.asarray(row.probabilities, dtype=np.float64) for row in rows}
    assert all(abs(p.sum() - 1) < 0.01 for p in probabilities.values())

    for query, expected in [("cat", "chelsea"), ("coffee", "coffee"), ("cup", "coffee"), ("missile", "rocket")]:
        response = search(api, album, text=query)
        assert response.status_code == 200, response.content
        results = response.json()["results"]
        assert results[0]["image_id"] == ids[expected], (query, [(r["original_name"], r["score"]) for r in results])
        # The score is the probability mass on the classes the word names (halfvec rounding aside).
        classes = list(concept_index().match(query).classes)
        for hit in results:
            mass = probabilities[hit["image_id"]][classes].sum()
            assert hit["score"] == pytest.approx(mass, abs=2e-3) == pytest.approx(hit["cosines"]["text"], abs=1e-4)
            assert hit["score"] >= 0.01  # the concept default least score

    # A label from one of the album's support sets comes with the concept path's results too.
    support_set = SupportSet.objects.create(album=album, name="pets", encoder_spec="dense:efficientnet-lite0")
    Label.objects.create(image_id=ids["chelsea"], support_set=support_set, label="cat", predicted_label="cat",
                         scores={}, margin=0.25)
    labeled = search(api, album, text="cat").json()["results"]
    assert labeled[0]["labels"] == [{"support_set": support_set.pk, "support_set_name": "pets", "label": "cat",
                                     "state": "predicted", "margin": 0.25}]
    assert all(hit["labels"] == [] for hit in labeled[1:])

    # Words and an image combine as for SigLIP: (w_img·cos + w_text·mass) / (w_img + w_text) − w_neg·mass_neg.
    response = search(api, album, text="cat", image=io.BytesIO(encoded(sample("coffee"), "PNG")),
                      image_weight=1, text_weight=3, negative_text="coffee", negative_weight=0.5, min_score=-1)
    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert len(results) == len(PHOTOS) and results[0]["image_id"] == ids["chelsea"]
    for hit in results:
        parts = hit["cosines"]
        assert hit["score"] == pytest.approx((parts["image"] + 3 * parts["text"]) / 4 - 0.5 * parts["negative"], abs=2e-4)
        coffee_mass = probabilities[hit["image_id"]][list(concept_index().match("coffee").classes)].sum()
        assert parts["negative"] == pytest.approx(coffee_mass, abs=2e-3)
    coffee_hit = next(h for h in results if h["image_id"] == ids["coffee"])
    assert coffee_hit["cosines"]["image"] == pytest.approx(1.0, abs=1e-3)  # the query photo itself

    # A word that names no concept is a 400 that says so, with close concepts and the image hint.
    unknown = search(api, album, text="blorfish")
    assert unknown.status_code == 400 and unknown.json()["code"] == "concept_not_found"
    assert "image" in unknown.json()["message"]

    # Another user cannot search the album: the same 404 as for an album that does not exist.
    assert search(client_for(bob), album, text="cat").status_code == 404
