"""Any OpenAI-compatible chat-completions endpoint: vLLM, Ollama, llama.cpp server (`openai:…`).

Images travel as `data:image/jpeg;base64,…` `image_url` parts, interleaved with the same text
parts as the local backend's prompt. Only httpx and Pillow: this may run in the web process.

Failures: connection errors (refused, reset, connect timeout), 429 and 5xx are retried
`LOUPE_VLM_RETRIES` times with exponential backoff and jitter (honouring Retry-After), then raise
`VlmUnavailableError`. A read timeout is not retried: the server took the request and is still
generating, and sending it again would double its load. Other 4xx and unusable bodies raise
`VlmResponseError` at once. The API key (`LOUPE_VLM_API_KEY`) is sent as a bearer token and never
logged or put in an error.
"""

from __future__ import annotations

import base64
import io
import logging
import random
import time

import httpx
from django.conf import settings

from encoders.images import to_rgb
from encoders.vlm.base import VisionLanguageModel, VlmRequest
from encoders.vlm.errors import VlmResponseError, VlmUnavailableError
from encoders.vlm.prompting import Conversation, ImagePart
from encoders.vlm.spec import VlmSpec

logger = logging.getLogger(__name__)

JPEG_QUALITY = 90
MAX_BACKOFF_SECONDS = 30.0
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})  # and any other 5xx
_BODY_EXCERPT = 300  # characters of an error body quoted in a message


class OpenAICompatibleVlm(VisionLanguageModel):
    def __init__(self, spec: VlmSpec, *, device: str = "remote"):
        self.spec = str(spec)
        self.model_name = spec.model
        self.url = f"{spec.base_url}/chat/completions"
        # One pooled client per endpoint; httpx clients are thread-safe.
        self._client = httpx.Client(follow_redirects=False)

    def payload(self, conversation: Conversation, request: VlmRequest) -> dict:
        content = [
            {"type": "image_url", "image_url": {"url": jpeg_data_url(part.image)}}
            if isinstance(part, ImagePart)
            else {"type": "text", "text": part.text}
            for part in conversation.parts
        ]
        return {
            "model": self.model_name,
            "messages": [
                {"role": "system", "content": conversation.system},
                {"role": "user", "content": content},
            ],
            "temperature": request.temperature,
            "top_p": request.top_p,
            "max_tokens": request.max_new_tokens,
            "stream": False,
        }

    def generate(self, conversation: Conversation, request: VlmRequest) -> str:
        response = self._post(self.payload(conversation, request))
        return completion_text(response, url=self.url)

    def _post(self, payload: dict) -> httpx.Response:
        timeout = float(settings.LOUPE_VLM_TIMEOUT_SECONDS)
        retries = max(0, int(settings.LOUPE_VLM_RETRIES))
        backoff = float(settings.LOUPE_VLM_RETRY_BACKOFF_SECONDS)
        headers = {"Accept": "application/json"}
        if settings.LOUPE_VLM_API_KEY:
            headers["Authorization"] = f"Bearer {settings.LOUPE_VLM_API_KEY}"

        attempts = retries + 1
        for attempt in range(1, attempts + 1):
            retry_after = None
            try:
                response = self._client.post(self.url, json=payload, headers=headers, timeout=timeout)
            except httpx.ReadTimeout as error:
                raise VlmUnavailableError(
                    f"The VLM endpoint {self.url} did not answer within {timeout:g} s "
                    "(LOUPE_VLM_TIMEOUT_SECONDS); not retried, it may still be generating.",
                    extra={"url": self.url, "timeout_seconds": timeout},
                ) from error
            except httpx.TransportError as error:
                failure = f"{type(error).__name__}: {error}"
                if attempt == attempts:
                    raise VlmUnavailableError(
                        f"The VLM endpoint {self.url} is unreachable after {attempts} attempt(s): {failure}.",
                        extra={"url": self.url, "attempts": attempts},
                    ) from error
            else:
                if response.status_code < 400:
                    return response
                if not _retried(response.status_code):
                    raise VlmResponseError(
                        f"The VLM endpoint {self.url} refused the request: HTTP {response.status_code}: "
                        f"{_excerpt(response)}",
                        extra={"url": self.url, "status": response.status_code},
                    )
                failure = f"HTTP {response.status_code}: {_excerpt(response)}"
                if attempt == attempts:
                    raise VlmUnavailableError(
                        f"The VLM endpoint {self.url} kept failing after {attempts} attempt(s): {failure}",
                        extra={"url": self.url, "attempts": attempts, "status": response.status_code},
                    )
                retry_after = _retry_after_seconds(response)
            delay = _backoff_delay(attempt, backoff, retry_after)
            logger.warning("VLM endpoint %s: %s; retry %d of %d in %.2f s", self.url, failure, attempt, retries, delay)
            time.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")


def jpeg_data_url(image) -> str:
    buffer = io.BytesIO()
    to_rgb(image).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def completion_text(response: httpx.Response, *, url: str) -> str:
    """`choices[0].message.content` — a string, or (some servers) a list of text parts."""
    try:
        body = response.json()
    except ValueError as error:
        raise VlmResponseError(
            f"The VLM endpoint {url} answered with something that is not JSON: {_excerpt(response)}",
            extra={"url": url, "status": response.status_code},
        ) from error
    try:
        content = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as error:
        raise VlmResponseError(
            f"The VLM endpoint {url} answered JSON without choices[0].message.content: {_excerpt(response)}",
            extra={"url": url, "status": response.status_code},
        ) from error
    if content is None:
        return ""  # a completion cut before any text (finish_reason "length" at 0 tokens)
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    if not isinstance(content, str):
        raise VlmResponseError(
            f"The VLM endpoint {url} answered a message content that is neither text nor text parts.",
            extra={"url": url, "status": response.status_code},
        )
    return content


def _retried(status: int) -> bool:
    return status in RETRIED_STATUSES or status >= 500


def _retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # absent, or an HTTP date: fall back to our own backoff


def _backoff_delay(attempt: int, base: float, retry_after: float | None) -> float:
    if retry_after is not None:
        return min(retry_after, MAX_BACKOFF_SECONDS)
    # Exponential with jitter, so workers that failed together do not retry together.
    return min(base * 2 ** (attempt - 1) * random.uniform(0.5, 1.0), MAX_BACKOFF_SECONDS)


def _excerpt(response: httpx.Response) -> str:
    text = response.text.strip().replace("\n", " ")
    return text[:_BODY_EXCERPT] + ("…" if len(text) > _BODY_EXCERPT else "")
