"""OpenCLIP: open-clip/<architecture>/<pretrained tag>/<checkpoint>, with an open_clip_config.json
for an architecture the library does not ship."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from encoders.layouts import WeightsLayout, unknown_model
from encoders.layouts.openai_clip import OPENAI_CLIP_CACHE
from encoders.weights import ResolvedWeights, WeightsLocation, models_dir, read_json, weights_missing_error

CHECKPOINT_NAMES = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin",
    "open_clip_pytorch_model.pth",
    "model.safetensors",
    "pytorch_model.bin",
)
CHECKPOINT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
HUB_CHECKPOINT_NAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")  # what open_clip's hub repos hold


class OpenClipWeights(WeightsLayout):
    def location(self, spec):
        return WeightsLocation(models_dir() / self.family / spec.model / spec.weights, (CHECKPOINT_NAMES[0],))

    def config_file(self, spec) -> Path:
        return self.location(spec).directory / "open_clip_config.json"

    def find(self, spec, *, import_libraries: bool):
        checkpoint = _checkpoint_in(self.location(spec).directory)
        if checkpoint:
            return ResolvedWeights(checkpoint, "models_dir", (checkpoint,))
        cached = _cached(spec) if import_libraries else None  # open_clip's tag table imports torch
        return ResolvedWeights(cached, "cache", (cached,)) if cached else None

    def fetch(self, spec):
        import open_clip  # imports torch: workers only

        cfg = open_clip.get_pretrained_cfg(spec.model, spec.weights)
        if not cfg:
            raise weights_missing_error(spec, reason=f"open_clip knows no pretrained tag {spec.weights!r} for {spec.model}.")
        location = self.location(spec)
        location.directory.mkdir(parents=True, exist_ok=True)
        if cfg.get("hf_hub"):
            from huggingface_hub import hf_hub_download  # huggingface_hub: worker tier only

            repo_id, filename = split_hf_hub(cfg["hf_hub"])
            for name in [filename] if filename else HUB_CHECKPOINT_NAMES:
                try:
                    path = Path(hf_hub_download(repo_id, name, local_dir=location.directory))
                    return ResolvedWeights(path, "download", (path,))
                except Exception:
                    if name == "open_clip_pytorch_model.bin" or filename:
                        raise
        from open_clip.pretrained import download_pretrained_from_url  # imports torch: workers only

        path = Path(download_pretrained_from_url(cfg["url"], cache_dir=str(location.directory)))
        return ResolvedWeights(path, "download", (path,))

    def hub_files(self, spec):
        """open_clip's own table names the repository; an architecture defined in the models dir
        may name one too, as `"hf_hub": "org/repo"` in its open_clip_config.json."""
        import open_clip  # imports torch: workers only

        source = (open_clip.get_pretrained_cfg(spec.model, spec.weights) or {}).get("hf_hub") \
            or read_json(self.config_file(spec)).get("hf_hub")
        if not source:
            return None
        repo_id, filename = split_hf_hub(source)
        return repo_id, ((filename,) if filename else HUB_CHECKPOINT_NAMES)

    def custom_present(self, spec) -> bool:
        return self.config_file(spec).is_file()

    def check_known(self, spec) -> None:
        if spec.model not in _architectures() and not self.custom_present(spec):
            raise unknown_model(
                spec, f"open_clip has no architecture {spec.model!r} (e.g. ViT-B-32, ViT-L-14, "
                f"ViT-SO400M-14-SigLIP), and {self.config_file(spec)} does not define it.")

    def dim(self, spec) -> int | None:
        config = _config(self, spec)
        return int(config["embed_dim"]) if config and "embed_dim" in config else None

    def specs_in(self, root: Path) -> list[str]:
        return [f"open-clip:{d.parent.name}/{d.name}" for d in sorted((root / self.family).glob("*/*")) if d.is_dir()]


def split_hf_hub(value: str) -> tuple[str, str]:
    """open_clip writes hub sources as 'org/repo/' or 'org/repo/filename'."""
    parts = value.strip("/").split("/")
    return "/".join(parts[:2]), "/".join(parts[2:])


def _checkpoint_in(directory: Path) -> Path | None:
    if not directory.is_dir():
        return None
    for name in CHECKPOINT_NAMES:
        if (directory / name).is_file():
            return directory / name
    others = sorted(p for p in directory.iterdir() if p.suffix in CHECKPOINT_SUFFIXES and p.is_file())
    return others[0] if len(others) == 1 else None


def _cached(spec) -> Path | None:
    import open_clip  # imports torch: workers only

    cfg = open_clip.get_pretrained_cfg(spec.model, spec.weights)
    if not cfg:
        return None
    if cfg.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache  # huggingface_hub: worker tier only

        repo_id, filename = split_hf_hub(cfg["hf_hub"])
        for name in ([filename] if filename else HUB_CHECKPOINT_NAMES):
            hit = try_to_load_from_cache(repo_id, name)
            if isinstance(hit, str):
                return Path(hit)
    if cfg.get("url"):
        candidate = OPENAI_CLIP_CACHE / Path(cfg["url"]).name  # open_clip's url downloads share CLIP's cache dir
        if candidate.is_file():
            return candidate
    return None


def _config_dir() -> Path | None:
    # find_spec locates the installed package without running its __init__ (which imports torch).
    found = importlib.util.find_spec("open_clip")
    if found is None or not found.submodule_search_locations:
        return None
    return Path(next(iter(found.submodule_search_locations))) / "model_configs"


def _architectures() -> set[str]:
    directory = _config_dir()
    return {p.stem for p in directory.glob("*.json")} if directory else set()


def _config(layout: OpenClipWeights, spec) -> dict | None:
    custom = read_json(layout.config_file(spec))
    if custom:
        return custom.get("model_cfg", custom)
    directory = _config_dir()
    return read_json(directory / f"{spec.model}.json") if directory else None
