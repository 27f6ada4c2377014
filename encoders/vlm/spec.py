"""`transformers:<model>` and `openai:<base_url>/<model>` — a VLM spec, parsed once into a value.

`transformers:` takes a model id, a path under `LOUPE_MODELS_DIR` (`Qwen/Qwen2-VL-2B-Instruct` →
`$LOUPE_MODELS_DIR/Qwen/Qwen2-VL-2B-Instruct/`), or an absolute directory (`/srv/vlm/qwen2-vl`).

`openai:` takes the URL of an OpenAI-compatible server with the model name appended. Model names
contain slashes (`Qwen/Qwen2-VL-2B-Instruct`) and colons (Ollama's `llava:7b`), so the split is by
rule, not by guess: the base URL ends at the first path segment that is exactly `v1` and
everything after it is the model; a URL with no `v1` segment ends at its last segment, which is the
model. `openai:http://127.0.0.1:8000/v1/Qwen/Qwen2-VL-2B-Instruct` → base
`http://127.0.0.1:8000/v1`, model `Qwen/Qwen2-VL-2B-Instruct`; requests go to
`<base>/chat/completions`. Credentials, query strings and fragments are refused: the spec is stored
and shown, and the key comes from `LOUPE_VLM_API_KEY`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import urlsplit

from encoders.spec import safe_segments, split_spec
from encoders.vlm.errors import VlmSpecError

MAX_SPEC_LENGTH = 500
BACKENDS = {
    "transformers": "transformers:<model id under LOUPE_MODELS_DIR, or an absolute directory>",
    "openai": "openai:<base_url>/<model>, e.g. openai:http://127.0.0.1:8000/v1/Qwen/Qwen2-VL-2B-Instruct",
}
_MODEL_NAME = re.compile(r"^[^\s/][^\s]*$")  # served model names are the server's business; no spaces


@dataclass(frozen=True)
class VlmSpec:
    backend: str
    model: str  # transformers: the id or absolute directory; openai: the served model name
    base_url: str | None = None  # openai only, without a trailing slash

    @classmethod
    def parse(cls, text: str) -> VlmSpec:
        text, backend, rest = split_spec(text, max_length=MAX_SPEC_LENGTH, error=_spec_error)
        prefix = text.partition(":")[0]
        if backend not in BACKENDS:
            raise _spec_error(text, f"{prefix!r} is not a VLM backend")
        if not rest.strip():
            raise _spec_error(text, f"it names no model ({BACKENDS[backend]})")
        if backend == "transformers":
            return cls(backend=backend, model=_transformers_model(text, rest.strip()))
        base_url, model = _split_openai(text, rest.strip())
        return cls(backend=backend, model=model, base_url=base_url)

    def __str__(self) -> str:
        if self.base_url is None:
            return f"{self.backend}:{self.model}"
        return f"{self.backend}:{self.base_url}/{self.model}"

    @property
    def is_local_directory(self) -> bool:
        return self.backend == "transformers" and self.model.startswith("/")


def _transformers_model(text: str, model: str) -> str:
    if model.startswith("/"):
        path = PurePosixPath(model)
        if ".." in path.parts:
            raise _spec_error(text, "a model directory may not contain '..'")
        return str(path)
    if not safe_segments(model.rstrip("/")):
        raise _spec_error(
            text,
            f"{model!r} is neither an absolute directory nor a model id of safe path segments "
            "(letters, digits, . _ - @ +, no '..'), e.g. Qwen/Qwen2-VL-2B-Instruct",
        )
    return model.rstrip("/")


def _split_openai(text: str, url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise _spec_error(text, f"{url!r} is not an http(s) URL with a host")
    if parts.username is not None or parts.password is not None:
        # Not even the error may echo them: it is shown to the client and logged.
        shown = text.replace(parts.netloc, "***@" + parts.netloc.rpartition("@")[2])
        raise _spec_error(shown, "credentials do not belong in the spec; set LOUPE_VLM_API_KEY")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise _spec_error(text, "a query string or fragment has no place in the endpoint URL")
    try:
        port = parts.port
    except ValueError:
        raise _spec_error(text, f"{parts.netloc!r} has an invalid port") from None
    segments = [segment for segment in parts.path.split("/") if segment]
    if "v1" in segments:
        cut = segments.index("v1") + 1
    else:
        cut = len(segments) - 1
    base_segments, model = segments[:cut], "/".join(segments[cut:])
    if not model:
        raise _spec_error(text, f"it names no model after the base URL ({BACKENDS['openai']})")
    if not _MODEL_NAME.match(model):
        raise _spec_error(text, f"the model name {model!r} contains whitespace")
    host = parts.hostname.lower()
    if ":" in host:  # IPv6 literals keep their brackets
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    base_url = f"{parts.scheme.lower()}://{netloc}" + "".join(f"/{segment}" for segment in base_segments)
    return base_url, model


def _spec_error(text, reason: str) -> VlmSpecError:
    backends = "; ".join(BACKENDS.values())
    return VlmSpecError(f"Invalid VLM spec {text!r}: {reason}. Valid forms: {backends}.", extra={"spec": str(text)})
