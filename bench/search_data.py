"""Synthetic clustered unit vectors and fast loading into search_embedding (for bench.search).

Vectors: a global mean direction (real CLIP embeddings are anisotropic: unrelated photos still
have cosine ~0.2-0.4), 64 super-clusters, a few thousand cluster centres around them, and points
= normalize(centre + sigma_c * noise) with a per-cluster sigma and lognormal cluster sizes. Uniform
random unit vectors would make every neighbour almost equally far (ANN looks artificially bad, or
artificially easy at small k).

Loading: albums_image rows from one INSERT ... SELECT generate_series on the server, then the
vectors by binary COPY built directly from a NumPy structured array (one fixed-size record per row),
with FK triggers skipped (session_replication_role = replica; the ids come from the INSERT).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import numpy as np

PG_EPOCH = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
COPY_TRAILER = b"\xff\xff"


def _normalize(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@dataclass
class ClusteredSpace:
    """The shared distribution every album (and every query) is drawn from, for one dimension."""

    dim: int
    centres: np.ndarray  # (C, dim) unit
    sigmas: np.ndarray  # (C,)
    weights: np.ndarray  # (C,) sums to 1
    neighbour: np.ndarray  # (C,) index of each centre's nearest other centre

    @classmethod
    def make(cls, dim: int, *, n_clusters: int = 3000, seed: int = 0) -> "ClusteredSpace":
        rng = np.random.default_rng([seed, dim, 1])
        mean = _normalize(rng.standard_normal(dim))
        supers = _normalize(rng.standard_normal((64, dim)))
        parent = rng.integers(0, 64, n_clusters)
        centres = _normalize(0.45 * mean + 0.55 * supers[parent] + 0.75 * _normalize(rng.standard_normal((n_clusters, dim))))
        sigmas = rng.uniform(0.55, 1.0, n_clusters).astype(np.float32)
        weights = rng.lognormal(0.0, 1.0, n_clusters)
        weights /= weights.sum()
        sims = centres @ centres.T
        np.fill_diagonal(sims, -2)
        return cls(dim=dim, centres=centres, sigmas=sigmas, weights=weights, neighbour=sims.argmax(1))

    def sample(self, n: int, rng: np.random.Generator, *, clusters: np.ndarray | None = None, noise: float = 1.0):
        """n unit vectors (float32) and the cluster each came from."""
        if clusters is None:
            clusters = rng.choice(len(self.centres), size=n, p=self.weights)
        out = np.empty((n, self.dim), dtype=np.float32)
        for start in range(0, n, 65536):
            c = clusters[start : start + 65536]
            g = rng.standard_normal((len(c), self.dim), dtype=np.float32) / np.float32(np.sqrt(self.dim))
            out[start : start + len(c)] = _normalize(self.centres[c] + (noise * self.sigmas[c])[:, None] * g)
        return out, clusters

    def queries(self, n: int, *, seed: int) -> dict[str, np.ndarray]:
        """Held-out queries (fresh samples, never rows of the table): an image part, a text part from
        the same cluster (noisier, as a caption is a blurrier description than a photo), and a
        negative text from the nearest other cluster (what a user would subtract)."""
        rng = np.random.default_rng([seed, self.dim, 2])
        image, clusters = self.sample(n, rng)
        text, _ = self.sample(n, rng, clusters=clusters, noise=1.4)
        negative, _ = self.sample(n, rng, clusters=self.neighbour[clusters], noise=1.4)
        return {"image": image, "text": text, "negative": negative}


def embedding_copy_dtype(model_id_len: int, dim: int) -> np.dtype:
    """One binary COPY tuple of (image_id, album_id, model_id, dim, vector, created_at)."""
    return np.dtype(
        [
            ("nfields", ">i2"),
            ("l_image", ">i4"), ("image_id", ">i8"),
            ("l_album", ">i4"), ("album_id", ">i8"),
            ("l_model", ">i4"), ("model_id", f"S{model_id_len}"),
            ("l_dim", ">i4"), ("dim", ">i4"),
            ("l_vec", ">i4"), ("vdim", ">i2"), ("vunused", ">i2"), ("vec", ">f4", (dim,)),
            ("l_ts", ">i4"), ("ts", ">i8"),
        ]
    )


def copy_embeddings(conn, *, album_id: int, model_id: str, image_ids: np.ndarray, vectors: np.ndarray, chunk: int = 50_000) -> None:
    """Binary COPY into search_embedding on a psycopg connection (inside the caller's transaction)."""
    dim = vectors.shape[1]
    model = model_id.encode()
    dtype = embedding_copy_dtype(len(model), dim)
    now_us = int((datetime.datetime.now(datetime.timezone.utc) - PG_EPOCH).total_seconds() * 1_000_000)
    with conn.cursor() as cur:
        cur.execute("SET LOCAL session_replication_role = replica")  # skip FK triggers: ids are known good
        with cur.copy(
            "COPY search_embedding (image_id, album_id, model_id, dim, vector, created_at) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.write(COPY_HEADER)
            for start in range(0, len(image_ids), chunk):
                n = min(chunk, len(image_ids) - start)
                rec = np.zeros(n, dtype=dtype)
                rec["nfields"] = 6
                rec["l_image"] = 8
                rec["image_id"] = image_ids[start : start + n]
                rec["l_album"] = 8
                rec["album_id"] = album_id
                rec["l_model"] = len(model)
                rec["model_id"] = model
                rec["l_dim"] = 4
                rec["dim"] = dim
                rec["l_vec"] = 4 + 4 * dim
                rec["vdim"] = dim
                rec["vec"] = vectors[start : start + n]
                rec["l_ts"] = 8
                rec["ts"] = now_us
                copy.write(rec.tobytes())
            copy.write(COPY_TRAILER)


def insert_images(conn, *, album_id: int, n: int) -> np.ndarray:
    """n minimal albums_image rows (status indexed) made on the server; their ids."""
    with conn.cursor() as cur:
        cur.execute(
            """
            INSERT INTO albums_image (album_id, file, original_name, sha256, bytes, width, height, mime, exif,
                                      camera, status, failure_reason, thumbnail, created_at, updated_at)
            SELECT %s, 'bench/' || g || '.jpg', 'img' || g || '.jpg', md5(g::text) || md5('x' || g), 100000,
                   640, 480, 'image/jpeg', '{}'::jsonb, '', 'indexed', '', '', now(), now()
            FROM generate_series(1, %s) AS g
            RETURNING id
            """,
            [album_id, n],
        )
        return np.array([r[0] for r in cur.fetchall()], dtype=np.int64)


def copy_album_vectors(conn, *, album_id: int, model_id: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (image_id, vector) of the album under the model, by binary COPY, ordered by image id."""
    buf = bytearray()
    with conn.cursor() as cur:
        with cur.copy(
            "COPY (SELECT image_id, vector FROM search_embedding WHERE album_id = %s AND model_id = %s "
            "ORDER BY image_id) TO STDOUT (FORMAT BINARY)",
            [album_id, model_id],
        ) as copy:
            for block in copy:
                buf += block
    dtype = np.dtype([("nfields", ">i2"), ("l_id", ">i4"), ("id", ">i8"), ("l_vec", ">i4"), ("vdim", ">i2"),
                      ("vunused", ">i2"), ("vec", ">f4", (dim,))])
    n = (len(buf) - len(COPY_HEADER) - len(COPY_TRAILER)) // dtype.itemsize
    rec = np.frombuffer(bytes(buf), dtype=dtype, count=n, offset=len(COPY_HEADER))
    return rec["id"].astype(np.int64), np.ascontiguousarray(rec["vec"].astype(np.float32))
