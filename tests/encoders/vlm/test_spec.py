"""Spec validation, the allow-list, error → HTTP status mapping, and the web tier's imports."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from config.errors import api_exception_handler
from encoders.vlm import (
    VlmNotAllowedError,
    VlmRequestError,
    VlmResponseError,
    VlmSpecError,
    VlmUnavailableError,
    VlmWeightsMissingError,
    validate_vlm_spec,
)
from encoders.vlm.spec import VlmSpec

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("text", "normalized", "base_url", "model"),
    [
        (
            "transformers:Qwen/Qwen2-VL-2B-Instruct",
            "transformers:Qwen/Qwen2-VL-2B-Instruct",
            None,
            "Qwen/Qwen2-VL-2B-Instruct",
        ),
        (
            " Transformers:Qwen/Qwen2.5-VL-3B-Instruct/ ",
            "transformers:Qwen/Qwen2.5-VL-3B-Instruct",
            None,
            "Qwen/Qwen2.5-VL-3B-Instruct",
        ),
        ("transformers:/srv/models//qwen2-vl/", "transformers:/srv/models/qwen2-vl", None, "/srv/models/qwen2-vl"),
        (
            "openai:http://127.0.0.1:8000/v1/Qwen/Qwen2-VL-2B-Instruct",
            "openai:http://127.0.0.1:8000/v1/Qwen/Qwen2-VL-2B-Instruct",
            "http://127.0.0.1:8000/v1",
            "Qwen/Qwen2-VL-2B-Instruct",
        ),
        (
            "openai:HTTP://Ollama.local:11434/v1/llava:7b",
            "openai:http://ollama.local:11434/v1/llava:7b",
            "http://ollama.local:11434/v1",
            "llava:7b",
        ),
        (
            "openai:https://gw.example.com/llm/v1/org/v1-model",
            "openai:https://gw.example.com/llm/v1/org/v1-model",
            "https://gw.example.com/llm/v1",
            "org/v1-model",
        ),  # the first segment that is exactly v1
        (
            "openai:http://10.0.0.5:8080/api/qwen2-vl",
            "openai:http://10.0.0.5:8080/api/qwen2-vl",
            "http://10.0.0.5:8080/api",
            "qwen2-vl",
        ),  # no v1: the last segment is the model
        ("openai:http://[::1]:8000/v1/m", "openai:http://[::1]:8000/v1/m", "http://[::1]:8000/v1", "m"),
    ],
)
def test_specs_normalize_and_round_trip(vlm_settings, text, normalized, base_url, model):
    assert validate_vlm_spec(text) == normalized
    parsed = VlmSpec.parse(text)
    assert (parsed.base_url, parsed.model) == (base_url, model)
    assert str(VlmSpec.parse(normalized)) == normalized


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "it is empty"),
        ("Qwen/Qwen2-VL-2B-Instruct", "no 'backend:' prefix"),
        ("llama:Qwen/Qwen2-VL-2B-Instruct", "'llama' is not a VLM backend"),
        ("transformers:", "it names no model"),
        ("transformers:  ", "it names no model"),
        ("openai:", "it names no model"),
        ("transformers:../../etc", "neither an absolute directory nor a model id"),
        ("transformers:Qwen/../secrets", "neither an absolute directory nor a model id"),
        ("transformers:/srv/../etc", "may not contain '..'"),
        ("openai:http://127.0.0.1:8000/v1", "names no model after the base URL"),
        ("openai:http://127.0.0.1:8000/v1/", "names no model after the base URL"),
        ("openai:ftp://host/v1/m", "not an http(s) URL with a host"),
        ("openai:http:///v1/m", "not an http(s) URL with a host"),
        ("openai:not a url", "not an http(s) URL with a host"),
        ("openai:http://host:99999/v1/m", "invalid port"),
        ("openai:http://host/v1/m?key=1", "query string or fragment"),
        ("openai:http://host/v1/m#x", "query string or fragment"),
        ("openai:http://host/v1/my model", "contains whitespace"),
    ],
)
def test_bad_specs_fail_with_the_reason_and_the_valid_forms(vlm_settings, text, reason):
    with pytest.raises(VlmSpecError) as raised:
        validate_vlm_spec(text)
    assert reason in raised.value.message
    assert "transformers:<model id" in raised.value.message and "openai:<base_url>/<model>" in raised.value.message
    assert raised.value.code == "vlm_spec_invalid"


def test_credentials_in_the_url_are_refused_without_being_echoed(vlm_settings):
    with pytest.raises(VlmSpecError) as raised:
        validate_vlm_spec("openai:http://admin:hunter2@10.0.0.5:8000/v1/m")
    assert "LOUPE_VLM_API_KEY" in raised.value.message
    assert "hunter2" not in raised.value.message and "hunter2" not in str(raised.value.extra)


def test_the_allow_list_limits_specs_after_normalization(vlm_settings):
    vlm_settings.LOUPE_ALLOWED_VLMS = ["openai:http://VLLM:8000/v1/Qwen/Qwen2-VL-2B-Instruct", ""]
    assert validate_vlm_spec("openai:http://vllm:8000/v1/Qwen/Qwen2-VL-2B-Instruct")
    with pytest.raises(VlmNotAllowedError) as raised:
        validate_vlm_spec("openai:http://169.254.169.254/v1/latest")
    assert raised.value.extra["allowed"] == ["openai:http://vllm:8000/v1/Qwen/Qwen2-VL-2B-Instruct"]
    assert isinstance(raised.value, VlmSpecError)


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (VlmSpecError("bad"), 400, "vlm_spec_invalid"),
        (VlmNotAllowedError("no"), 400, "vlm_not_allowed"),
        (VlmRequestError("bad"), 400, "vlm_request_invalid"),
        (
            VlmWeightsMissingError("gone", spec="transformers:x", files=["/m/x/config.json"], directory="/m/x"),
            503,
            "vlm_weights_missing",
        ),
        (VlmUnavailableError("down", extra={"url": "http://h/v1/chat/completions"}), 503, "vlm_unavailable"),
        (VlmResponseError("garbage"), 502, "vlm_response_invalid"),
    ],
)
def test_errors_map_to_the_api_error_shape_and_status(error, status, code):
    response = api_exception_handler(error, {})
    assert response.status_code == status
    assert response.data == {"message": error.message, "code": code, "extra": error.extra}


def test_the_web_tier_imports_neither_torch_nor_transformers(tmp_path):
    script = """
import json, sys
import django
django.setup()
from encoders.vlm import Evidence, VlmRequest, VlmAnswer, VisionLanguageModel, get_vlm, validate_vlm_spec, VlmError
validate_vlm_spec("transformers:Qwen/Qwen2-VL-2B-Instruct")
vlm = get_vlm("openai:http://127.0.0.1:9/v1/Qwen/Qwen2-VL-2B-Instruct")
print(json.dumps({"torch": "torch" in sys.modules, "transformers": "transformers" in sys.modules,
                  "backend": type(vlm).__name__}))
"""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.base",
        "LOUPE_VAR_DIR": str(tmp_path),
        "LOUPE_MODELS_DIR": str(tmp_path / "models"),
    }
    result = subprocess.run(
        [sys.executable, "-c", script], check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"torch": False, "transformers": False, "backend": "OpenAICompatibleVlm"}
