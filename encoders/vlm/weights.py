"""Where a `transformers:` VLM's files live, and the error that says what is missing.

Offline only: `$LOUPE_MODELS_DIR/<model id>/` or the absolute directory the spec names, holding
the Hugging Face repository as files (what `save_pretrained` or `hf download
--local-dir` writes). No hub download: a VLM is gigabytes, placed by an operator.
"""

from __future__ import annotations

from pathlib import Path

from encoders.vlm.errors import VlmWeightsMissingError
from encoders.vlm.spec import VlmSpec
from encoders.weights import models_dir

# Each requirement: what it is, and the names that satisfy it (any one; "*.x" is a glob).
REQUIRED_FILES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("model config", ("config.json",)),
    ("weights", ("*.safetensors",)),
    ("tokenizer", ("tokenizer.json", "tokenizer_config.json")),
    ("image processor config", ("preprocessor_config.json", "processor_config.json")),
)


def model_directory(spec: VlmSpec) -> Path:
    if spec.is_local_directory:
        return Path(spec.model)
    return models_dir() / spec.model


def missing_requirements(directory: Path) -> list[str]:
    """One `a or b` entry per requirement nothing in `directory` satisfies."""
    missing = []
    for _, names in REQUIRED_FILES:
        if not any(_present(directory, name) for name in names):
            missing.append(" or ".join(names))
    return missing


def resolve_model_directory(spec: VlmSpec) -> Path:
    directory = model_directory(spec)
    missing = missing_requirements(directory) if directory.is_dir() else [" or ".join(n) for _, n in REQUIRED_FILES]
    if missing:
        raise vlm_weights_missing_error(spec, directory, missing)
    return directory


def vlm_weights_missing_error(
    spec: VlmSpec, directory: Path, missing: list[str], *, reason: str = ""
) -> VlmWeightsMissingError:
    where = "" if spec.is_local_directory else " (LOUPE_MODELS_DIR/<model id>)"
    state = "is incomplete" if directory.is_dir() else "does not exist"
    message = (
        f"Weights for VLM {spec} are missing: {directory}/{where} {state}"
        + (f"; it needs {'; '.join(missing)}" if missing else "")
        + ". Put the model's Hugging Face repository files there (config.json, the *.safetensors weights, "
        "tokenizer files, preprocessor_config.json and the chat template); see docs/encoders.md."
    )
    if reason:
        message += f" {reason}"
    return VlmWeightsMissingError(
        message, spec=str(spec), files=[str(directory / name) for name in missing], directory=str(directory)
    )


def _present(directory: Path, name: str) -> bool:
    if name.startswith("*"):
        return any(path.is_file() for path in directory.glob(name))
    return (directory / name).is_file()
