"""OpenAI's CLIP package: one checkpoint file, named as the package names its downloads."""

from __future__ import annotations

from pathlib import Path

from encoders.catalog import OPENAI_CLIP_MODELS
from encoders.layouts import WeightsLayout, unknown_model
from encoders.weights import ResolvedWeights, WeightsLocation, models_dir, weights_missing_error

OPENAI_CLIP_CACHE = Path("~/.cache/clip").expanduser()  # clip.load's default download_root


def openai_clip_filename(model: str) -> str:
    known = OPENAI_CLIP_MODELS.get(model)
    # A custom checkpoint follows the package's own naming: slashes become dashes.
    return known.filename if known else model.replace("/", "-") + ".pt"


class OpenAIClipWeights(WeightsLayout):
    def location(self, spec):
        return WeightsLocation(models_dir() / self.family, (openai_clip_filename(spec.model),))

    def find(self, spec, *, import_libraries: bool):
        location = self.location(spec)
        for directory, source in ((location.directory, "models_dir"), (OPENAI_CLIP_CACHE, "cache")):
            candidate = directory / location.files[0]
            if candidate.is_file():
                return ResolvedWeights(candidate, source, (candidate,))
        return None

    def fetch(self, spec):
        if spec.model not in OPENAI_CLIP_MODELS:
            raise weights_missing_error(spec, reason="Only the CLIP package's own models can be fetched.")
        import clip  # imports torch: workers only

        location = self.location(spec)
        location.directory.mkdir(parents=True, exist_ok=True)
        clip.load(spec.model, device="cpu", download_root=str(location.directory))
        path = location.directory / location.files[0]
        return ResolvedWeights(path, "download", (path,))

    def custom_present(self, spec) -> bool:
        location = self.location(spec)
        return (location.directory / location.files[0]).is_file()

    def check_known(self, spec) -> None:
        if spec.model not in OPENAI_CLIP_MODELS and not self.custom_present(spec):
            raise unknown_model(
                spec, f"the CLIP package has no model {spec.model!r}; known: {', '.join(OPENAI_CLIP_MODELS)} "
                f"(or a checkpoint at {self.location(spec).describe()}).", models=list(OPENAI_CLIP_MODELS))

    def dim(self, spec) -> int | None:
        return OPENAI_CLIP_MODELS[spec.model].dim if spec.model in OPENAI_CLIP_MODELS else None

    def specs_in(self, root: Path) -> list[str]:
        known = {m.filename: name for name, m in OPENAI_CLIP_MODELS.items()}
        return [f"openai-clip:{known.get(c.name, c.stem)}" for c in sorted((root / self.family).glob("*.pt"))]
