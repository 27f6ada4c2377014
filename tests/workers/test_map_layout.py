"""The map's pure pieces that need neither UMAP nor a worker (the fit and placement run in
tests/workers/test_maps.py, through the worker)."""

import numpy as np

from encoders.concepts import concept_index
from workers import map_layout


def test_the_box_keeps_the_aspect_ratio():
    xy = np.array([[10, 5], [14, 5], [12, 6]], dtype=np.float32)  # 4 wide, 1 high
    scaled, centre, half = map_layout._scale_into_box(xy)
    assert np.allclose(scaled, [[-1, -0.25], [1, -0.25], [0, 0.25]]) and centre == [12, 5.5] and half == 2


def test_nearest_neighbours_are_the_exact_cosine_ones_nearest_first():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(300, 16)).astype(np.float32)
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    queries = points[:40] + 0.1 * rng.normal(size=(40, 16)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    indices, distances = map_layout.nearest_neighbours(queries, points, 5, block=7)
    expected = np.argsort(-(queries @ points.T), axis=1, kind="stable")[:, :5]
    assert np.array_equal(indices, expected)
    assert np.allclose(distances, 1 - np.take_along_axis(queries @ points.T, expected, axis=1), atol=1e-6)


def test_tiny_albums_get_a_line_and_no_clusters_without_umap():
    layout = map_layout.fit(np.eye(3, 8, dtype=np.float32))
    assert np.allclose(layout.xy, [[-1, 0], [0, 0], [1, 0]])
    assert map_layout.cluster(layout.xy).tolist() == [-1, -1, -1]


def test_a_clusters_terms_are_its_dominant_imagenet_concepts():
    names = concept_index().class_names
    means = np.zeros((2, 1000))
    means[0, [207, 208]] = [0.5, 0.3]  # two dog breeds
    means[1, 954] = 0.9
    terms = map_layout.concept_terms(means, top=2)
    assert terms[0] == [names[207].split(",")[0], names[208].split(",")[0]]
    assert terms[1][0] == names[954].split(",")[0]


def test_a_placed_point_joins_the_cluster_of_most_of_its_fitted_neighbours():
    anchors = np.array([[0, 0], [0.1, 0], [0, 0.1], [1, 1], [0.9, 1], [1, 0.9], [0.05, 0.05]], dtype=np.float32)
    clusters = np.array([3, 3, -1, 7, 7, 7, 3])
    got = map_layout.nearest_clusters(np.array([[0.02, 0.02], [0.95, 0.95]]), anchor_xy=anchors,
                                      anchor_clusters=clusters, k=3)
    assert got.tolist() == [3, 7]
