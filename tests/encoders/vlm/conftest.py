"""VLM tests run the product's own code against a tiny real Qwen2-VL (random weights, saved to a
temp models dir) and against a real HTTP server on loopback that speaks the OpenAI chat API."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from encoders.vlm import Evidence, VlmRequest
from tests.encoders.vlm.tiny_qwen2_vl import build_tiny_qwen2_vl

TINY_QWEN_ID = "tests/tiny-qwen2-vl"
TINY_QWEN_SPEC = f"transformers:{TINY_QWEN_ID}"
TINY_QWEN25_SPEC = "transformers:tests/tiny-qwen2.5-vl"
CANNED_ANSWER = "Class: dirty\nExplanation: Brown stains cover the left half.\nThey look like evidence 2."


@pytest.fixture(scope="session")
def tiny_vlm_models_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vlm-models")
    build_tiny_qwen2_vl(root / TINY_QWEN_ID)
    build_tiny_qwen2_vl(root / TINY_QWEN25_SPEC.partition(":")[2], version="2.5")
    return root


@pytest.fixture
def vlm_settings(settings, tmp_path):
    settings.LOUPE_MODELS_DIR = tmp_path / "models"
    settings.LOUPE_DEVICE = "cpu"
    settings.LOUPE_ALLOWED_VLMS = []
    settings.LOUPE_VLM_API_KEY = ""
    settings.LOUPE_VLM_TIMEOUT_SECONDS = 10.0
    settings.LOUPE_VLM_RETRIES = 2
    settings.LOUPE_VLM_RETRY_BACKOFF_SECONDS = 0.01
    settings.LOUPE_VLM_PROMPTS_DIR = ""
    return settings


@pytest.fixture
def tiny_vlm_settings(vlm_settings, tiny_vlm_models_dir):
    vlm_settings.LOUPE_MODELS_DIR = tiny_vlm_models_dir
    return vlm_settings


def solid(size: tuple[int, int], colour: tuple[int, int, int]) -> Image.Image:
    return Image.new("RGB", size, colour)


@pytest.fixture
def vlm_request() -> VlmRequest:
    """A query and four evidence crops of distinct sizes and colours, so each can be recognized
    where it arrives."""
    return VlmRequest(
        query=solid((64, 48), (200, 30, 30)),
        classes=("clean", "dirty", "cracked"),
        evidence=(
            Evidence(label="clean", image=solid((32, 32), (20, 200, 20)), similarity=0.91),
            Evidence(label="clean", image=solid((40, 24), (20, 20, 200)), similarity=0.874),
            Evidence(label="dirty", image=solid((24, 40), (120, 80, 20)), similarity=0.82),
            Evidence(label="cracked", image=solid((30, 20), (240, 240, 240)), similarity=0.5),
        ),
        class_scores={"clean": 0.5, "dirty": 0.3, "cracked": 0.2},
        temperature=0.2,
        top_p=0.9,
        max_new_tokens=64,
    )


# --- An OpenAI-compatible endpoint on loopback ---------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    body: bytes | None = None  # None: a chat completion of CANNED_ANSWER
    headers: dict[str, str] = field(default_factory=dict)
    delay_seconds: float = 0.0


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.body)


class FakeChatEndpoint:
    """Records every request; answers from `replies` in order, then with the canned completion."""

    def __init__(self):
        self.requests: list[RecordedRequest] = []
        self.replies: list[Reply] = []
        self._lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with endpoint._lock:
                    endpoint.requests.append(
                        RecordedRequest(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    reply = endpoint.replies.pop(0) if endpoint.replies else Reply()
                time.sleep(reply.delay_seconds)
                payload = reply.body if reply.body is not None else chat_completion(CANNED_ANSWER)
                try:
                    self.send_response(reply.status)
                    for name, value in {"Content-Type": "application/json", **reply.headers}.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def chat_completion(content) -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "model": "served",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        }
    ).encode()


@pytest.fixture
def chat_endpoint():
    endpoint = FakeChatEndpoint()
    yield endpoint
    endpoint.close()
