"""The model_id vectors are stored under: the encoder's weights, plus how the album pools and stores.

`Encoder.model_id` is `<spec>@sha256:<12 hex>` and names the weights. An album's vectors also
depend on its pooling (a masked mean is not comparable with a global mean) and are indexed per its
storage kind (a Hamming index over sign bits is not a cosine index), so both join the id:

    dense:dinov2-small@sha256:0123456789ab                         mean pooling, float32 index
    dense:dinov2-small@sha256:0123456789ab+pooling=masked
    dense:dinov2-small@sha256:0123456789ab+pooling=regions-4x3+storage=binary
    dense:dinov2-small@sha256:0123456789ab+pooling=masked+segmenter=ba9876543210   (person masks from a model)
    dense:efficientnet-lite0@sha256:0123456789ab+dtype=bf16                        (image tower run in bf16)

The defaults add nothing, so every album made before these settings keeps its model_id. Changing
either setting therefore changes the model_id, and the generation mechanism rebuilds the album;
a vector is never compared with one pooled or indexed another way, or made in another precision
(`dtype`: the image tower's autocast dtype; none is float32). No torch, no Django.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from encoders.pooling import DEFAULT_POOLING, MASKED, POOLINGS, REGION_COLS, REGION_ROWS, REGIONS

DEFAULT_STORAGE = "vector"
FLOAT32 = "fp32"
PRECISIONS = (FLOAT32, "bf16", "fp16")


@dataclass(frozen=True)
class ModelId:
    """A model_id parsed once (`parse_model_id`) and passed on as it is: search reads the album's
    model_id string, parses it, and hands this value to the query encoder and the vector SQL, so no
    layer splits the string again. `str()` gives back the exact text it was parsed from (the text
    the vectors are stored under), else the canonical composition."""

    encoder_model_id: str  # "<spec>@sha256:<hex>", what the loaded encoder reports
    pooling: str = DEFAULT_POOLING
    storage: str = DEFAULT_STORAGE
    region_grid: tuple[int, int] = (REGION_ROWS, REGION_COLS)
    segmenter: str | None = None  # checksum of the person-segmentation weights that made masks, if any
    precision: str = FLOAT32  # the dtype the image tower ran in
    text: str | None = field(default=None, compare=False, repr=False)  # as parsed, verbatim

    @property
    def spec(self) -> str:
        return self.encoder_model_id.rsplit("@", 1)[0]

    def describe(self) -> str:
        """For people: the spec and what differs from the defaults, no checksums."""
        notes = []
        if self.pooling != DEFAULT_POOLING:
            notes.append(f"{self.pooling} {self.region_grid[0]}×{self.region_grid[1]}" if self.pooling == REGIONS
                         else self.pooling)
        if self.storage != DEFAULT_STORAGE:
            notes.append(self.storage)
        if self.precision != FLOAT32:
            notes.append(self.precision)
        return self.spec + (f" ({', '.join(notes)})" if notes else "")

    def __str__(self) -> str:
        return self.text if self.text is not None else self.compose()

    def compose(self) -> str:
        """The canonical text: the encoder's model_id and the options that differ from the defaults."""
        suffix = ""
        if self.pooling != DEFAULT_POOLING:
            label = self.pooling
            if self.pooling == REGIONS:
                label += f"-{self.region_grid[0]}x{self.region_grid[1]}"
            suffix += f"+pooling={label}"
        if self.segmenter:
            suffix += f"+segmenter={self.segmenter}"
        if self.storage != DEFAULT_STORAGE:
            suffix += f"+storage={self.storage}"
        if self.precision != FLOAT32:
            suffix += f"+dtype={self.precision}"
        return self.encoder_model_id + suffix


ModelIdParts = ModelId  # the earlier name


def compose_model_id(
    encoder_model_id: str, *, pooling: str = DEFAULT_POOLING, storage: str = DEFAULT_STORAGE, segmenter: str | None = None,
    precision: str = FLOAT32,
) -> str:
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; known: {', '.join(POOLINGS)}")
    if segmenter and pooling != MASKED:
        raise ValueError("a segmenter only makes masks for masked pooling")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
    return ModelId(encoder_model_id, pooling=pooling, storage=storage, segmenter=segmenter, precision=precision).compose()


@lru_cache(maxsize=1024)
def parse_model_id(model_id: str) -> ModelId:
    """The inverse of `compose_model_id`. `+` never occurs after the `@` of an encoder model_id.
    Cached (the value is frozen): processes that meet a model_id string at their edge (a task's
    argument, an album row read by the indexer) parse the same few again and again."""
    head, at, tail = model_id.rpartition("@")
    if not at:
        return ModelId(model_id, text=model_id)
    checksum, *options = tail.split("+")
    values = dict(option.partition("=")[::2] for option in options)
    pooling = values.get("pooling", DEFAULT_POOLING)
    grid = (REGION_ROWS, REGION_COLS)
    if pooling.startswith(REGIONS + "-"):
        rows, _, cols = pooling[len(REGIONS) + 1 :].partition("x")
        pooling, grid = REGIONS, (int(rows), int(cols))
    return ModelId(f"{head}@{checksum}", pooling=pooling, storage=values.get("storage", DEFAULT_STORAGE), region_grid=grid,
                   segmenter=values.get("segmenter") or None, precision=values.get("dtype", FLOAT32), text=model_id)
