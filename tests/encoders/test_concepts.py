"""The bundled ImageNet concept hierarchy (encoders/data/imagenet_concepts.json) and the word matcher."""

import json

import pytest

from encoders.concepts import DATA, NUM_CLASSES, concept_index
from encoders.errors import ConceptNotFoundError


def names(classes):
    index = concept_index()
    return {index.class_names[c] for c in classes}


def test_the_bundled_file_is_consistent():
    data = json.loads(DATA.read_text())
    wnids = [c["wnid"] for c in data["classes"]]
    assert len(wnids) == NUM_CLASSES == len(set(wnids))
    # timm's class order (the classifier's output order), first and last
    assert wnids[0] == "n01440764" and wnids[-1] == "n15075141"
    concepts = data["concepts"]
    assert len(concepts["entity.n.01"]["classes"]) == NUM_CLASSES  # every class reaches WordNet's root
    for entry in concepts.values():
        assert entry["lemmas"] and entry["classes"] == sorted(set(entry["classes"]))
        assert all(0 <= c < NUM_CLASSES for c in entry["classes"])


def test_dog_covers_every_breed():
    match = concept_index().match("dog")
    assert match.concepts == ("dog.n.01",)
    assert len(match.classes) > 100
    assert {"golden retriever", "Chihuahua", "German shepherd"} <= names(match.classes)
    assert "hotdog" not in names(match.classes)  # "dog" is not that synset's head name


def test_vehicle_covers_cars_and_trucks():
    covered = names(concept_index().match("vehicle").classes)
    assert {"sports car", "cab", "fire engine", "pickup", "trailer truck"} <= covered


def test_food_covers_pizza_and_bagels():
    covered = names(concept_index().match("food").classes)
    assert {"pizza", "bagel"} <= covered


@pytest.mark.parametrize("query, expected", [
    ("cats", "tabby"), ("a photo of a cat", "Egyptian cat"), ("hot dog", "hotdog"), ("coffee", "espresso"),
    ("Sandals", "sandal"),
])
def test_phrases_plurals_and_filler_words(query, expected):
    assert expected in names(concept_index().match(query).classes)


def test_several_words_take_the_union():
    index = concept_index()
    both = set(index.match("cat and dog").classes)
    assert both == set(index.match("cat").classes) | set(index.match("dog").classes)


@pytest.mark.parametrize("query", ["blorf", "dog blorf", "the", ""])
def test_an_unknown_word_is_an_error_naming_it(query):
    with pytest.raises(ConceptNotFoundError) as raised:
        concept_index().match(query)
    assert raised.value.code == "concept_not_found"
    assert "image" in raised.value.message  # suggests searching with an example image


def test_the_error_lists_close_concepts():
    with pytest.raises(ConceptNotFoundError) as raised:
        concept_index().match("xylophonist")
    assert "xylophone" in raised.value.extra["close"]


def test_indicator_dotted_with_probabilities_is_the_mass():
    import numpy as np

    match = concept_index().match("cat")
    probabilities = np.full(NUM_CLASSES, 1 / NUM_CLASSES, dtype=np.float32)
    assert float(match.indicator() @ probabilities) == pytest.approx(len(match.classes) / NUM_CLASSES)
