"""`openai:` against a real HTTP server on loopback: what goes over the wire, and every way the
endpoint can fail."""

from __future__ import annotations

import base64
import io
import socket
import time

import pytest
from PIL import Image

from encoders.vlm import VlmResponseError, VlmUnavailableError, get_vlm
from tests.encoders.vlm.conftest import CANNED_ANSWER, Reply, chat_completion

MODEL = "Qwen/Qwen2-VL-2B-Instruct"


def spec_for(endpoint) -> str:
    return f"openai:{endpoint.base}/v1/{MODEL}"


def decode_data_url(url: str) -> Image.Image:
    prefix = "data:image/jpeg;base64,"
    assert url.startswith(prefix)
    return Image.open(io.BytesIO(base64.b64decode(url[len(prefix) :])))


def test_sends_the_query_and_labelled_evidence_and_parses_the_answer(vlm_settings, chat_endpoint, vlm_request):
    vlm_settings.LOUPE_VLM_API_KEY = "sk-test-123"

    answer = get_vlm(spec_for(chat_endpoint)).answer(vlm_request)

    assert (answer.flag, answer.parsed) == ("dirty", True)
    assert answer.explanation == "Brown stains cover the left half.\nThey look like evidence 2."
    assert answer.raw == CANNED_ANSWER
    assert answer.model == spec_for(chat_endpoint)

    [sent] = chat_endpoint.requests
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-test-123"
    body = sent.json
    assert body["model"] == MODEL
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["stream"]) == (0.2, 0.9, 64, False)
    system, user = body["messages"]
    assert system["role"] == "system" and '"clean", "dirty", "cracked"' in system["content"]
    assert user["role"] == "user"

    parts = user["content"]
    # text, query image, then (label line, crop) per evidence, then the question: strictly interleaved.
    assert [p["type"] for p in parts] == ["text", "image_url"] + ["text", "image_url"] * 4 + ["text"]
    images = [decode_data_url(p["image_url"]["url"]) for p in parts if p["type"] == "image_url"]
    assert [image.size for image in images] == [vlm_request.query.size, *(e.image.size for e in vlm_request.evidence)]
    for image, original in zip(images, vlm_request.images):
        # JPEG is lossy; a solid colour survives within a few levels.
        got, want = image.convert("RGB").getpixel((5, 5)), original.getpixel((5, 5))
        assert max(abs(a - b) for a, b in zip(got, want)) <= 8
    assert parts[0]["text"].strip() == "Query image:"
    evidence_lines = [parts[i]["text"].strip() for i in range(2, 10, 2)]
    assert evidence_lines == [
        'Evidence 1 — class "clean" (similarity 0.91):',
        'Evidence 2 — class "clean" (similarity 0.87):',
        'Evidence 3 — class "dirty" (similarity 0.82):',
        'Evidence 4 — class "cracked" (similarity 0.50):',
    ]
    question = parts[-1]["text"]
    assert '- "clean": 0.500\n- "dirty": 0.300\n- "cracked": 0.200' in question
    assert "Which class does the query image belong to?" in question
    assert 'Class: <one of "clean", "dirty", "cracked">' in question


def test_no_key_no_authorization_header(vlm_settings, chat_endpoint, vlm_request):
    get_vlm(spec_for(chat_endpoint)).answer(vlm_request)
    assert "authorization" not in chat_endpoint.requests[0].headers


def test_an_answer_naming_no_class_is_unparsed_with_the_raw_text_kept(vlm_settings, chat_endpoint, vlm_request):
    chat_endpoint.replies.append(Reply(body=chat_completion("\nClass: rusty\nExplanation: Orange flakes.\n")))
    answer = get_vlm(spec_for(chat_endpoint)).answer(vlm_request)
    assert (answer.flag, answer.parsed, answer.explanation) == (None, False, "Orange flakes.")
    assert answer.raw == "\nClass: rusty\nExplanation: Orange flakes.\n"  # the transcript, untouched


def test_content_as_a_list_of_text_parts_is_read(vlm_settings, chat_endpoint, vlm_request):
    parts = [{"type": "text", "text": "Class: clean\n"}, {"type": "text", "text": "Explanation: spotless"}]
    chat_endpoint.replies.append(Reply(body=chat_completion(parts)))
    answer = get_vlm(spec_for(chat_endpoint)).answer(vlm_request)
    assert (answer.flag, answer.explanation) == ("clean", "spotless")


def test_endpoint_down_is_unavailable_after_the_retries_naming_the_url(vlm_settings, vlm_request):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    vlm_settings.LOUPE_VLM_RETRY_BACKOFF_SECONDS = 0.2

    started = time.monotonic()
    with pytest.raises(VlmUnavailableError) as raised:
        get_vlm(f"openai:http://127.0.0.1:{port}/v1/{MODEL}").answer(vlm_request)

    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    assert url in raised.value.message and "after 3 attempt(s)" in raised.value.message
    assert raised.value.extra == {"url": url, "attempts": 3}
    assert raised.value.code == "vlm_unavailable"
    # Two backoffs of 0.2 and 0.4 s, each jittered down to at most half: the retries did wait.
    assert time.monotonic() - started >= 0.3


def test_a_500_then_a_200_is_retried_and_succeeds(vlm_settings, chat_endpoint, vlm_request):
    chat_endpoint.replies.append(Reply(status=500, body=b'{"error": "warming up"}'))
    answer = get_vlm(spec_for(chat_endpoint)).answer(vlm_request)
    assert answer.flag == "dirty"
    assert len(chat_endpoint.requests) == 2
    assert chat_endpoint.requests[0].body == chat_endpoint.requests[1].body  # the same request again


def test_a_429_honours_retry_after(vlm_settings, chat_endpoint, vlm_request):
    chat_endpoint.replies.append(Reply(status=429, body=b"slow down", headers={"Retry-After": "0.3"}))
    started = time.monotonic()
    assert get_vlm(spec_for(chat_endpoint)).answer(vlm_request).flag == "dirty"
    assert len(chat_endpoint.requests) == 2
    assert time.monotonic() - started >= 0.3


def test_a_server_that_keeps_failing_is_unavailable_after_retries_plus_one_requests(
    vlm_settings, chat_endpoint, vlm_request
):
    vlm_settings.LOUPE_VLM_RETRIES = 3
    chat_endpoint.replies.extend(Reply(status=503, body=b"overloaded") for _ in range(10))
    with pytest.raises(VlmUnavailableError) as raised:
        get_vlm(spec_for(chat_endpoint)).answer(vlm_request)
    assert len(chat_endpoint.requests) == 4
    assert "HTTP 503: overloaded" in raised.value.message
    assert f"{chat_endpoint.base}/v1/chat/completions" in raised.value.message


def test_a_400_is_not_retried_and_says_why(vlm_settings, chat_endpoint, vlm_request):
    vlm_settings.LOUPE_VLM_API_KEY = "sk-secret-key"
    chat_endpoint.replies.append(Reply(status=400, body=b'{"error": {"message": "image too large"}}'))
    with pytest.raises(VlmResponseError) as raised:
        get_vlm(spec_for(chat_endpoint)).answer(vlm_request)
    assert len(chat_endpoint.requests) == 1
    message = raised.value.message
    assert "refused the request: HTTP 400" in message and "image too large" in message
    assert "sk-secret-key" not in message and "sk-secret-key" not in str(raised.value.extra)
    assert raised.value.extra["status"] == 400


def test_malformed_json_is_a_response_error(vlm_settings, chat_endpoint, vlm_request):
    chat_endpoint.replies.append(Reply(body=b"<html>proxy error</html>"))
    with pytest.raises(VlmResponseError, match="not JSON: <html>proxy error</html>"):
        get_vlm(spec_for(chat_endpoint)).answer(vlm_request)
    assert len(chat_endpoint.requests) == 1


def test_json_without_a_completion_is_a_response_error(vlm_settings, chat_endpoint, vlm_request):
    chat_endpoint.replies.append(Reply(body=b'{"choices": []}'))
    with pytest.raises(VlmResponseError, match=r"without choices\[0\]\.message\.content"):
        get_vlm(spec_for(chat_endpoint)).answer(vlm_request)


def test_a_slow_server_times_out_once_without_a_retry(vlm_settings, chat_endpoint, vlm_request):
    vlm_settings.LOUPE_VLM_TIMEOUT_SECONDS = 0.3
    chat_endpoint.replies.append(Reply(delay_seconds=1.5))
    with pytest.raises(VlmUnavailableError, match=r"did not answer within 0\.3 s"):
        get_vlm(spec_for(chat_endpoint)).answer(vlm_request)
    assert len(chat_endpoint.requests) == 1


def test_one_client_per_spec_is_cached(vlm_settings, chat_endpoint):
    spec = spec_for(chat_endpoint)
    assert get_vlm(spec) is get_vlm(f"  OPENAI:{chat_endpoint.base.upper().replace('HTTP://', 'http://')}/v1/{MODEL}")


def test_a_flag_key_request_sends_the_prompts_verbatim_and_reads_the_boolean(vlm_settings, chat_endpoint, vlm_request):
    from dataclasses import replace

    chat_endpoint.replies.append(Reply(body=chat_completion("VisibleDirtyFlag = True\nExplanation: Mud on the doors.")))
    request = replace(vlm_request, system_prompt="You inspect cars.", user_prompt="VisibleDirtyFlag: True or False",
                      flag_key="VisibleDirtyFlag")
    answer = get_vlm(spec_for(chat_endpoint)).answer(request)
    assert (answer.flag_value, answer.parsed, answer.flag) == (True, True, None)
    assert answer.explanation == "Mud on the doors."
    system, user = chat_endpoint.requests[0].json["messages"]
    assert system["content"] == "You inspect cars."
    assert [p["type"] for p in user["content"]] == ["image_url"] * 5 + ["text"]
    assert user["content"][-1]["text"] == "VisibleDirtyFlag: True or False"
