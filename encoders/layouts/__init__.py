"""Each encoder family's weights, one module each: where the files go under the models directory,
how they are found offline, fetched, recognised as a custom model, and how wide its vectors are.
A backend names its layout in encoders/backends.py; encoders/weights.py and encoders/registry.py
ask it instead of branching on the backend's name. Nothing here imports torch unless a method is
told it may (`import_libraries`)."""

from __future__ import annotations

from pathlib import Path

from encoders.errors import EncoderSpecError
from encoders.spec import EncoderSpec
from encoders.weights import (
    ResolvedWeights,
    WeightsLocation,
    hf_cached_snapshot,
    hf_weight_files,
    is_hf_dir,
    models_dir,
    read_json,
    weights_missing_error,
)


class WeightsLayout:
    """The defaults are those of a Hugging Face-format directory (SigLIP, DINOv2-style backbones)."""

    def __init__(self, family: str) -> None:
        self.family = family  # the backend's prefix, and its folder under the models directory

    def location(self, spec: EncoderSpec):
        return WeightsLocation(models_dir() / self.family / spec.model, ("config.json", "model.safetensors"))

    def find(self, spec: EncoderSpec, *, import_libraries: bool):
        directory = self.location(spec).directory
        if is_hf_dir(directory):
            return ResolvedWeights(directory, "models_dir", hf_weight_files(directory))
        hf_id = self.hf_id(spec)
        cached = hf_cached_snapshot(hf_id) if hf_id else None
        return ResolvedWeights(cached, "cache", hf_weight_files(cached)) if cached else None

    def fetch(self, spec: EncoderSpec):
        from huggingface_hub import snapshot_download  # huggingface_hub: worker tier only (requirements/worker.txt)

        hf_id = self.hf_id(spec)
        if not hf_id:
            raise weights_missing_error(spec, reason=f"{spec.model!r} names no Hugging Face repository to fetch.")
        path = Path(snapshot_download(hf_id, local_dir=self.location(spec).directory))
        return ResolvedWeights(path, "download", hf_weight_files(path))

    def hub_files(self, spec: EncoderSpec) -> tuple[str, tuple[str, ...]] | None:
        """(hub repository, candidate file names, first found wins) for a model fetch job with byte
        progress (encoders/fetch.py); None: the job falls back to `fetch`, which reports no bytes."""
        return None

    def hf_id(self, spec: EncoderSpec) -> str | None:
        return spec.model if spec.model.count("/") == 1 else None

    def where_else(self, spec: EncoderSpec) -> str:
        """What else the operator may do, appended to the missing-weights message."""
        return ""

    def custom_present(self, spec: EncoderSpec) -> bool:
        """For names outside the catalogs: does something in the models dir define them?"""
        return True

    def check_known(self, spec: EncoderSpec) -> None:
        """Raise EncoderSpecError for a model the family does not know and the models dir does not define."""

    def dim(self, spec: EncoderSpec) -> int | None:
        """The vector width, when names and config files alone tell it."""
        config = read_json(self.location(spec).directory / "config.json")
        text = config.get("text_config") or {}
        width = text.get("projection_size") or text.get("hidden_size") or config.get("hidden_size")
        return int(width) if width else None

    def specs_in(self, root: Path) -> list[str]:
        """Spec strings for what an operator placed under `root / family`."""
        return [f"{self.family}:{config.parent.relative_to(root / self.family).as_posix()}"
                for config in sorted((root / self.family).glob("**/config.json"))]


def unknown_model(spec: EncoderSpec, why: str, **extra) -> EncoderSpecError:
    return EncoderSpecError(f"Invalid encoder spec {str(spec)!r}: {why}", extra={"spec": str(spec), **extra})
