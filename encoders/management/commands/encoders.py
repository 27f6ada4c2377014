"""`manage.py encoders list | check SPEC | fetch SPEC` — what an operator runs to set up models."""

from __future__ import annotations

import numpy as np
from django.core.management.base import BaseCommand, CommandError
from PIL import Image

from encoders.backends import TEXT
from encoders.errors import EncoderError
from encoders.registry import get_encoder, known_specs, validate_spec
from encoders.weights import fetch_weights, find_weights


class Command(BaseCommand):
    help = "List encoder specs and whether their weights are present; check one by embedding; fetch weights."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True)
        actions.add_parser("list", help="every known spec: weights present, dim, default min score, modalities")
        check = actions.add_parser("check", help="load SPEC, embed a generated image (and a text), print dims and norms")
        check.add_argument("spec")
        check.add_argument("--device", default=None, help="cpu, cuda, mps; default LOUPE_DEVICE")
        fetch = actions.add_parser("fetch", help="download SPEC's weights into LOUPE_MODELS_DIR (needs a network)")
        fetch.add_argument("spec")

    def handle(self, *args, action: str, **options):
        try:
            getattr(self, f"_{action}")(**options)
        except EncoderError as error:
            raise CommandError(f"[{error.code}] {error.message}") from error

    def _list(self, **options):
        header = f"{'spec':48} {'weights':8} {'dim':>5} {'min score':>9}  modalities"
        self.stdout.write(header)
        for row in known_specs():
            present = "present" if row["weights_present"] else "missing"
            dim = row["dim"] if row["dim"] is not None else "?"
            flag = "" if row["allowed"] else "  (not allowed here)"
            self.stdout.write(
                f"{row['spec']:48} {present:8} {dim:>5} {row['default_min_score']:>9.3f}  "
                f"{','.join(row['modalities'])}{flag}"
            )
            if not row["weights_present"] and options.get("verbosity", 1) > 1:
                self.stdout.write(f"    put weights at: {row['weights_location']}")

    def _check(self, *, spec: str, device: str | None = None, **options):
        encoder = get_encoder(spec, device=device)
        self.stdout.write(f"model_id: {encoder.model_id}\ndevice: {encoder.device}\ndim: {encoder.dim}")
        image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8))
        vectors = encoder.encode_images([image])
        self.stdout.write(f"image: shape {vectors.shape}, norm {np.linalg.norm(vectors[0]):.4f}")
        if TEXT in encoder.modalities:
            texts = encoder.encode_texts(["a photo of a dog"])
            cos = float(texts[0] @ vectors[0])
            self.stdout.write(
                f"text: shape {texts.shape}, norm {np.linalg.norm(texts[0]):.4f}, "
                f"cos {cos:.4f}, calibrated {float(encoder.calibrate_similarity(np.array([cos]))[0]):.4f}"
            )
        if encoder.supports_patches:
            self.stdout.write(f"patches: shape {encoder.patch_features([image]).shape}")
        self.stdout.write(self.style.SUCCESS(f"{spec}: ok"))

    def _fetch(self, *, spec: str, **options):
        parsed = validate_spec(spec)
        found = find_weights(parsed, import_libraries=True)
        if found:
            self.stdout.write(f"{parsed}: already present at {found.path} ({found.source})")
            return
        fetched = fetch_weights(parsed)
        self.stdout.write(self.style.SUCCESS(f"{parsed}: fetched to {fetched.path}"))
