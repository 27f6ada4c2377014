"""An encoder as an album uses it: the loaded model plus the album's pooling and storage.

The registry caches one `Encoder` per spec and device; albums that pool or store differently share
it. `PooledEncoder` is the cheap per-album view: its `model_id` is the composed id
(encoders/model_ids.py) that the album's vectors are stored under, and `embed` returns what the
indexer writes — a unit vector per image, the region tokens for `regions`, and per image why
masked pooling fell back to the mean. `mean` delegates to `encode_images` unchanged, so any encoder
(CLIP, SigLIP…) works here and a mean-pooled album's vectors are those it always had.

Masks, first found wins: a mask given with the image (an editor's upload, `search.ImageMask`), then
the image's alpha channel (images handed in as RGBA are composited for the model as `to_rgb` always
did, and their alpha is the foreground; a fully opaque alpha is no mask at all), then the person
segmenter when one is configured (encoders/segmenter.py; its checksum is then part of the model_id).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageOps

from encoders.errors import EncoderSpecError
from encoders.images import to_rgb
from encoders.model_ids import DEFAULT_STORAGE, ModelIdParts, compose_model_id, parse_model_id
from encoders.pooling import MASKED, MEAN, MIN_COVERAGE, REGIONS, Pooled, pool, weighted_pool

ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
OPAQUE_ALPHA = "the alpha channel is fully opaque: no foreground mask"
GRID_CHUNK = 16  # images per forward pass when the raw grid is pooled on the host (a multiple of 8)


def keep_alpha(image: Image.Image) -> Image.Image:
    """Upright first frame, RGBA when the image has transparency, RGB otherwise (for masked pooling:
    `to_rgb` would flatten the alpha the mask comes from)."""
    if getattr(image, "is_animated", False):
        image.seek(0)
    image = ImageOps.exif_transpose(image) or image
    if image.mode in ALPHA_MODES or (image.mode == "P" and "transparency" in image.info):
        return image.convert("RGBA")
    return to_rgb(image)


def alpha_mask(image: Image.Image) -> tuple[Image.Image | None, str]:
    """The image's alpha as a mode-L mask, or None and why not."""
    if image.mode not in ALPHA_MODES:
        return None, ""
    alpha = image.getchannel("A")
    low, _ = alpha.getextrema()
    if low == 255:
        return None, OPAQUE_ALPHA
    return alpha, ""


class PooledEncoder:
    def __init__(self, encoder, *, pooling: str = MEAN, storage: str = DEFAULT_STORAGE, segmenter=None,
                 precision: str | None = None):
        """`precision`: the dtype the image tower runs in (fp32, bf16, fp16); None is this device's
        default for new vectors (encoders/torch_runtime.py: default_image_precision)."""
        if pooling != MEAN and not getattr(encoder, "supports_pooling", False):
            raise EncoderSpecError(
                f"Pooling {pooling!r} needs a dense backbone (dense:…); {encoder.spec} gives one vector per image.",
                extra={"pooling": pooling},
            )
        self.encoder = encoder
        self.pooling = pooling
        self.storage = storage
        self.dim = encoder.dim
        # Masks from a model only matter to masked pooling; elsewhere the segmenter is not used.
        self.segmenter = segmenter if pooling == MASKED else None
        if precision is None:
            # imports torch; the web tier imports this module (keep_alpha)
            from encoders.torch_runtime import default_image_precision

            precision = default_image_precision(getattr(encoder, "device", "cpu"))
        self.precision = precision
        self.model_id = compose_model_id(encoder.model_id, pooling=pooling, storage=storage,
                                         segmenter=self.segmenter.checksum if self.segmenter else None,
                                         precision=precision)
        self.parts: ModelIdParts = parse_model_id(self.model_id)

    @property
    def has_concepts(self) -> bool:
        """Whether the backbone scores ImageNet concepts (encoders/concepts.py) beside its vectors."""
        return bool(getattr(self.encoder, "has_concepts", False))

    @property
    def needs_alpha(self) -> bool:
        return self.pooling == MASKED

    @property
    def region_grid(self) -> tuple[int, int]:
        return self.parts.region_grid

    def embed(
        self, images: Sequence[Image.Image], *, batch_size: int | None = None,
        masks: Sequence[Image.Image | None] | None = None,
    ) -> Pooled:
        """`masks`: per image an uploaded mask (mode L, any size: resized to the image) or None."""
        # imports torch; the web tier imports this module (keep_alpha)
        from encoders.torch_runtime import image_precision

        with image_precision(self.precision):
            return self._embed(images, batch_size=batch_size, masks=masks)

    def _embed(self, images, *, batch_size, masks) -> Pooled:
        if self.pooling == MEAN:
            if self.has_concepts:
                vectors, concepts = self.encoder.encode_images_with_concepts(images, batch_size=batch_size)
                return Pooled(vectors=vectors, notes=[""] * len(images), concepts=concepts)
            return Pooled(vectors=self.encoder.encode_images(images, batch_size=batch_size), notes=[""] * len(images))
        given = list(masks) if masks is not None else [None] * len(images)
        if len(given) != len(images):
            raise ValueError(f"{len(given)} masks for {len(images)} images")
        # The raw grid comes to host memory before pooling: a Sapiens2-1B grid is 64 × 48 × 1536 floats
        # (19 MB) per image, so grids are made and pooled GRID_CHUNK images at a time. A multiple of 8
        # rows per forward pass keeps vectors byte-identical whatever the batching (workers/pipeline.py).
        step = min(GRID_CHUNK, batch_size or GRID_CHUNK)
        parts = [self._pool_chunk(images[i : i + step], given[i : i + step]) for i in range(0, len(images), step)]
        return Pooled(
            vectors=np.concatenate([p.vectors for p in parts]) if parts else np.zeros((0, self.dim), dtype=np.float32),
            regions=np.concatenate([p.regions for p in parts]) if parts and parts[0].regions is not None else None,
            notes=[note for p in parts for note in p.notes],
            concepts=np.concatenate([p.concepts for p in parts]) if parts and parts[0].concepts is not None else None,
        )

    def _pool_chunk(self, images: Sequence[Image.Image], masks: Sequence[Image.Image | None]) -> Pooled:
        rows, cols = self.region_grid
        if self.pooling == REGIONS:
            grid = self.encoder.raw_grid(images, batch_size=len(images))
            pooled = pool(grid, pooling=REGIONS, rows=rows, cols=cols)
            pooled.concepts = self.encoder.concepts_of_grid(grid) if self.has_concepts else None
            return pooled
        found, reasons = [], []
        for image, mask in zip(images, masks, strict=True):
            if mask is not None:
                found.append(mask.convert("L").resize(image.size, Image.Resampling.BILINEAR))
                reasons.append("")
            else:
                alpha, reason = alpha_mask(image)
                found.append(alpha)
                reasons.append(reason)
        if self.segmenter is not None:
            missing = [i for i, mask in enumerate(found) if mask is None]
            for i, mask in zip(missing, self.segmenter.masks([images[i] for i in missing])):
                found[i], reasons[i] = mask, ""
        grid = self.encoder.raw_grid([to_rgb(image) for image in images], batch_size=len(images))
        coverage = self.encoder.cell_coverage(found, grid.shape[1:3])
        pooled = pool(grid, pooling=MASKED, coverage=coverage)
        # Concepts are the whole image's, whatever the pooling: the classifier saw the whole grid.
        pooled.concepts = self.encoder.concepts_of_grid(grid) if self.has_concepts else None
        # The specific reason (opaque alpha) beats the generic "no alpha channel".
        pooled.notes = [reason if reason and note else note for note, reason in zip(pooled.notes, reasons)]
        return pooled

    def encode_images(self, images: Sequence[Image.Image], *, batch_size: int | None = None) -> np.ndarray:
        return self.embed(images, batch_size=batch_size).vectors

    def box_vector(self, image: Image.Image, box: Sequence[float]) -> np.ndarray:
        """A box (x0, y0, x1, y1), fractions of the image's width and height, → the unit vector of the
        tokens under it, in the space of the stored region tokens. The box goes through the model's
        own resize and crop, so a box partly outside a centre crop counts only the part inside."""
        if not getattr(self.encoder, "supports_pooling", False):
            raise EncoderSpecError(f"Region queries need a dense backbone; {self.encoder.spec} has no token grid.")
        rgb = to_rgb(image)
        width, height = rgb.size
        x0, y0, x1, y1 = box
        mask = Image.new("L", rgb.size, 0)
        mask.paste(255, (round(x0 * width), round(y0 * height), max(round(x1 * width), round(x0 * width) + 1),
                         max(round(y1 * height), round(y0 * height) + 1)))
        # imports torch; the web tier imports this module (keep_alpha)
        from encoders.torch_runtime import image_precision

        with image_precision(self.precision):
            grid = self.encoder.raw_grid([rgb])
        [coverage] = self.encoder.cell_coverage([mask], grid.shape[1:3])
        weights = np.where(coverage >= MIN_COVERAGE, coverage, 0.0)
        if weights.sum() <= 0:
            raise ValueError("The box lies outside the part of the image the model sees.")
        return weighted_pool(grid[0], weights)
