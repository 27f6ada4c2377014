"""Classification with a vision-language model: an OpenAI-compatible server on loopback that records
what it is sent, and the tiny random-weight Qwen2-VL through the real loading code."""

import base64
import io

import pytest
from PIL import Image

from tests.encoders.vlm.conftest import TINY_QWEN_SPEC, FakeChatEndpoint, Reply, chat_completion
from tests.rag.conftest import augmented, b64

pytestmark = pytest.mark.django_db


@pytest.fixture
def endpoint(rag_settings):
    served = FakeChatEndpoint()
    rag_settings.LOUPE_VLM = f"openai:{served.base}/v1/qwen2-vl"
    rag_settings.LOUPE_ALLOWED_VLMS = []
    rag_settings.LOUPE_VLM_RETRIES = 1
    rag_settings.LOUPE_VLM_RETRY_BACKOFF_SECONDS = 0.01
    rag_settings.LOUPE_VLM_TIMEOUT_SECONDS = 10.0
    yield served
    served.close()


def _images_sent(request_json) -> list[Image.Image]:
    parts = [part for message in request_json["messages"] if isinstance(message["content"], list) for part in message["content"]]
    urls = [part["image_url"]["url"] for part in parts if part["type"] == "image_url"]
    return [Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) for url in urls]


def _text_sent(request_json) -> str:
    texts = []
    for message in request_json["messages"]:
        content = message["content"]
        texts.extend([content] if isinstance(content, str) else [p["text"] for p in content if p["type"] == "text"])
    return "\n".join(texts)


def test_the_vlm_gets_the_query_and_class_labeled_evidence_and_decides(two_class_set, alice, client_for, endpoint):
    endpoint.replies.append(Reply(body=chat_completion("Class: cup\nExplanation: A cup of coffee on a saucer.")))
    response = client_for(alice).post(
        f"/api/v1/support-sets/{two_class_set['id']}/classify/",
        {"image_base64": b64(augmented("chelsea")), "k": 4, "max_patches_per_class": 2, "temperature": 0.3,
         "user_prompt": "Is it a cat or a cup?", "system_prompt": "You inspect photos."},
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    decision = body["decision"]
    # The model's answer is the decision, even against the retrieval scores; both are reported.
    assert decision == {
        "flag": "cup", "retrieval_flag": "cat", "source": "vlm", "parsed": True,
        "explanation": "A cup of coffee on a saucer.", "raw_response": "Class: cup\nExplanation: A cup of coffee on a saucer.",
        "vlm": endpoint_spec(endpoint), "vlm_error": None,
    }
    [sent] = endpoint.requests
    payload = sent.json
    assert payload["temperature"] == 0.3
    images = _images_sent(payload)
    sent_evidence = [e for e in body["evidence"] if e["sent_to_vlm"]]
    assert len(sent_evidence) == 4 and len(images) == 1 + 4
    # Each crop is the evidence box of its support image, in order, each introduced with its class.
    for crop, item in zip(images[1:], sent_evidence, strict=True):
        x0, y0, x1, y1 = item["box"]
        assert crop.size == (x1 - x0, y1 - y0)
    text = _text_sent(payload)
    assert text.count('class "cat"') == 2 and text.count('class "cup"') == 2
    assert "Is it a cat or a cup?" in text and "You inspect photos." in text


def endpoint_spec(endpoint) -> str:
    return f"openai:{endpoint.base}/v1/qwen2-vl"


def test_an_answer_naming_no_class_is_unparsed_and_keeps_the_raw_text(two_class_set, alice, client_for, endpoint):
    endpoint.replies.append(Reply(body=chat_completion("It is a dog, obviously.")))
    body = client_for(alice).post(
        f"/api/v1/support-sets/{two_class_set['id']}/classify/", {"image_base64": b64(augmented("chelsea"))}, format="json"
    ).json()
    decision = body["decision"]
    assert decision["flag"] is None and decision["parsed"] is False
    assert decision["raw_response"] == "It is a dog, obviously."
    assert decision["retrieval_flag"] == "cat"


def test_an_endpoint_that_is_down_leaves_the_retrieval_answer_and_says_why(two_class_set, alice, client_for, endpoint):
    endpoint.close()
    body = client_for(alice).post(
        f"/api/v1/support-sets/{two_class_set['id']}/classify/", {"image_base64": b64(augmented("chelsea"))}, format="json"
    ).json()
    decision = body["decision"]
    assert decision["source"] == "retrieval" and decision["flag"] == "cat"
    assert decision["vlm_error"]["code"] and endpoint.base in decision["vlm_error"]["message"]
    assert body["class_scores"]["cat"] > 0.5


def test_use_vlm_false_skips_the_model(two_class_set, alice, client_for, endpoint):
    body = client_for(alice).post(
        f"/api/v1/support-sets/{two_class_set['id']}/classify/",
        {"image_base64": b64(augmented("chelsea")), "use_vlm": False},
        format="json",
    ).json()
    assert body["decision"]["source"] == "retrieval" and endpoint.requests == []


def test_the_tiny_qwen2_vl_runs_the_whole_pipeline(two_class_set, alice, client_for, rag_settings, tmp_path_factory):
    from tests.encoders.vlm.tiny_qwen2_vl import build_tiny_qwen2_vl
    from tests.encoders.vlm.conftest import TINY_QWEN_ID

    models = tmp_path_factory.mktemp("rag-vlm-models")
    build_tiny_qwen2_vl(models / TINY_QWEN_ID)
    rag_settings.LOUPE_MODELS_DIR = models
    rag_settings.LOUPE_VLM = TINY_QWEN_SPEC
    response = client_for(alice).post(
        f"/api/v1/support-sets/{two_class_set['id']}/classify/",
        {"image_base64": b64(augmented("coffee")), "max_new_tokens": 8, "max_patches_per_class": 1, "temperature": 0},
        format="json",
    )
    assert response.status_code == 200, response.content
    decision = response.json()["decision"]
    # Random weights write garbage: the pipeline ran and the answer was parsed or reported unparsed.
    assert decision["source"] == "vlm" and decision["vlm"] == TINY_QWEN_SPEC
    assert decision["flag"] in ("cat", "cup", None)
    assert decision["parsed"] is (decision["flag"] is not None)
    assert isinstance(decision["raw_response"], str)


def test_a_labeling_job_asks_the_model_only_below_the_margin_threshold(album_to_label, alice, endpoint):
    from search.rag import labeling
    from search.rag.models import Label, SupportSet

    support_set = SupportSet.objects.get(pk=album_to_label["id"])
    for _ in range(10):
        endpoint.replies.append(Reply(body=chat_completion("Class: cup\nExplanation: The model says cup.")))
    job, _ = labeling.label_job_start(support_set=support_set, user=alice, margin_threshold=0.99)
    labeling.label_job_run(job_id=job.pk)
    labels = list(Label.objects.filter(support_set=support_set))
    asked = [label for label in labels if label.margin < 0.99]
    assert asked and len(asked) < len(labels) and len(endpoint.requests) == len(asked)
    for label in labels:
        if label.margin < 0.99:
            assert (label.source, label.label, label.explanation) == ("model", "cup", "The model says cup.")
            assert label.scores and label.predicted_label == "cup"
        else:
            assert label.source == "retrieval" and label.explanation == ""


def test_a_labeling_job_without_a_threshold_never_asks_and_a_failing_model_keeps_retrieval(album_to_label, alice, endpoint):
    from search.rag import labeling
    from search.rag.models import Label, SupportSet

    support_set = SupportSet.objects.get(pk=album_to_label["id"])
    labeling.label_job_run(job_id=labeling.label_job_start(support_set=support_set, user=alice)[0].pk)
    assert not endpoint.requests and set(Label.objects.values_list("source", flat=True)) == {"retrieval"}
    for _ in range(20):
        endpoint.replies.append(Reply(status=500, body=b"{}"))
    job, _ = labeling.label_job_start(support_set=support_set, user=alice, margin_threshold=0.99, relabel=True)
    labeling.label_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "succeeded" and job.failed == 0
    low = Label.objects.filter(support_set=support_set, margin__lt=0.99)
    assert low.exists() and all(label.source == "retrieval" and "failed" in label.explanation for label in low)
