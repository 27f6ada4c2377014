"""Person masks from a semantic-segmentation model, for masked pooling (`LOUPE_PERSON_SEGMENTER`).

The operator saves a transformers semantic-segmentation model (`save_pretrained`: config.json,
weights, preprocessor_config.json) under `LOUPE_MODELS_DIR/segmenters/<name>/` and sets
`LOUPE_PERSON_SEGMENTER=<name>`. Its `id2label` must name a person class ("person", "human" or
"people"). The mask of an image is that class's softmax probability, upsampled to the image, so it
is soft at the edges like an alpha channel. The processor must resize without cropping (SegFormer's
does), so that the probability map covers the whole image.

Which segmenter made a mask changes the vectors, so its weights' checksum joins the model_id
(`+segmenter=<12 hex>`, encoders/model_ids.py): a changed segmenter is caught like changed weights.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from django.conf import settings
from PIL import Image

from encoders.errors import EncoderSpecError, EncoderWeightsInvalid, EncoderWeightsMissing
from encoders.images import to_rgb
from encoders.torch_runtime import inference, resolve_device
from encoders.weights import models_dir, weights_checksum

PERSON_LABELS = ("person", "human", "people")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def segmenter_directory(name: str) -> Path:
    if not _NAME.match(name):
        raise EncoderSpecError(f"LOUPE_PERSON_SEGMENTER {name!r} is not a directory name (letters, digits, . _ + -).")
    return models_dir() / "segmenters" / name


class PersonSegmenter:
    def __init__(self, directory: Path, *, device: str):
        # transformers takes seconds to import: only a configured segmenter needs it
        from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

        files = sorted(p for p in directory.glob("*") if p.suffix in (".safetensors", ".bin") and p.is_file())
        if not (directory / "config.json").is_file() or not files:
            raise EncoderWeightsMissing(
                f"The person segmenter is missing: put a save_pretrained semantic-segmentation model (config.json, "
                f"model.safetensors, preprocessor_config.json) in {directory}/, or unset LOUPE_PERSON_SEGMENTER.",
                spec=f"segmenter:{directory.name}", files=[str(directory / "config.json")], directory=str(directory),
            )
        self.model = AutoModelForSemanticSegmentation.from_pretrained(directory, local_files_only=True).to(device).eval()
        self.processor = AutoImageProcessor.from_pretrained(directory, local_files_only=True)
        labels = {str(label).lower(): int(index) for index, label in self.model.config.id2label.items()}
        person = next((labels[name] for name in PERSON_LABELS if name in labels), None)
        if person is None:
            raise EncoderWeightsInvalid(
                f"The segmenter in {directory} has no person class (labels: {sorted(labels)[:20]}).",
                extra={"directory": str(directory)},
            )
        self.person = person
        self.device = device
        self.checksum = weights_checksum(tuple(files))

    def masks(self, images: list[Image.Image]) -> list[Image.Image]:
        """Per image a mode-L mask of its size: 255 × the probability of the person class."""
        if not images:
            return []
        rgb = [to_rgb(image) for image in images]
        with inference(self.device):
            pixels = self.processor(images=rgb, return_tensors="pt")["pixel_values"].to(self.device)
            probabilities = self.model(pixel_values=pixels).logits.float().softmax(dim=1)[:, self.person : self.person + 1]
            out = []
            for image, probability in zip(rgb, probabilities):
                full = F.interpolate(probability[None], size=(image.height, image.width), mode="bilinear", align_corners=False)
                values = (full[0, 0].clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
                out.append(Image.fromarray(np.ascontiguousarray(values), "L"))
        return out


def get_person_segmenter(*, device: str | None = None) -> PersonSegmenter | None:
    """The configured segmenter, loaded once per (name, device, models dir) per process; None when
    `LOUPE_PERSON_SEGMENTER` is empty."""

    name = settings.LOUPE_PERSON_SEGMENTER
    if not name:
        return None
    directory = segmenter_directory(name)
    key = (str(directory), resolve_device(device or settings.LOUPE_DEVICE))
    with _lock:
        if key not in _segmenters:
            _segmenters[key] = PersonSegmenter(directory, device=key[1])
        return _segmenters[key]


_segmenters: dict[tuple[str, str], PersonSegmenter] = {}
_lock = threading.Lock()
