"""The prompt every backend receives, rendered from the template files; and what a request must be."""

from dataclasses import replace

import pytest
from PIL import Image

from encoders.vlm import Evidence, VlmRequest, VlmRequestError
from encoders.vlm.prompting import PACKAGED_PROMPTS_DIR, TEMPLATE_NAMES, ImagePart, TextPart, build_conversation


def test_default_templates_interleave_labelled_evidence_with_the_crops(vlm_settings, vlm_request):
    conversation = build_conversation(vlm_request)

    assert conversation.images == vlm_request.images
    assert [p.role for p in conversation.parts if isinstance(p, ImagePart)] == ["query"] + ["evidence"] * 4
    # Every crop comes right after the line that names its class.
    for index, part in enumerate(conversation.parts):
        if isinstance(part, ImagePart) and part.role == "evidence":
            introduced_by = conversation.parts[index - 1]
            assert isinstance(introduced_by, TextPart)
            assert f'class "{_evidence_of(vlm_request, part).label}"' in introduced_by.text
    text = conversation.text_with_placeholders()
    assert text.startswith('Query image:\n<image>\nEvidence 1 — class "clean" (similarity 0.91):\n<image>')
    assert conversation.system.startswith("You are a careful visual inspector.")
    assert 'one of these classes: "clean", "dirty", "cracked".' in conversation.system
    assert text.endswith(
        "Answer with exactly these two lines and nothing else:\n"
        'Class: <one of "clean", "dirty", "cracked">\n'
        "Explanation: <one or two sentences on what in the query image decided it>"
    )


def test_callers_prompts_replace_the_defaults_and_may_use_the_placeholders(vlm_settings, vlm_request):
    request = replace(
        vlm_request,
        system_prompt="You grade glassware. Options: $classes. Cost: $5.",
        user_prompt="Is it one of $classes? $evidence_count crops shown.",
    )
    conversation = build_conversation(request)
    assert conversation.system == 'You grade glassware. Options: "clean", "dirty", "cracked". Cost: $5.'
    text = conversation.text_with_placeholders()
    assert 'Is it one of "clean", "dirty", "cracked"? 4 crops shown.' in text
    assert "Which class does the query image belong to?" not in text


def test_an_operator_can_override_one_template_in_the_prompts_dir(vlm_settings, vlm_request, tmp_path):
    (tmp_path / "evidence.txt").write_text("[$number] a $label example, cosine $similarity:\n")
    vlm_settings.LOUPE_VLM_PROMPTS_DIR = str(tmp_path)
    text = build_conversation(vlm_request).text_with_placeholders()
    assert "[3] a dirty example, cosine 0.82:\n<image>" in text
    assert text.startswith("Query image:")  # the other templates are still the packaged ones


def test_every_template_is_a_packaged_file():
    assert sorted(p.name for p in PACKAGED_PROMPTS_DIR.glob("*.txt")) == sorted(TEMPLATE_NAMES)


def test_no_evidence_and_no_scores_still_make_a_prompt(vlm_settings):
    request = VlmRequest(query=Image.new("RGB", (8, 8)), classes=("a", "b"), evidence=(), class_scores={})
    conversation = build_conversation(request)
    assert conversation.images == [request.query]
    assert "- (no retrieval scores)" in conversation.text_with_placeholders()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"classes": ()}, "at least one class"),
        ({"classes": ("clean", " ")}, "non-empty label"),
        ({"classes": ("clean", "clean", "dirty", "cracked")}, "distinct"),
        ({"classes": ("clean", "dirty")}, "Evidence labelled ['cracked']"),
        ({"class_scores": {"rusty": 1.0}}, "Class scores for ['rusty']"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"max_new_tokens": 2.5}, "max_new_tokens"),
        ({"query": b"jpeg bytes"}, "PIL images"),
        ({"class_scores": {"clean": float("inf")}}, "finite numbers"),
    ],
)
def test_requests_are_checked_before_any_backend_runs(vlm_request, changes, message):
    with pytest.raises(VlmRequestError, match=message.replace("[", r"\[").replace("]", r"\]")):
        replace(vlm_request, **changes)


def test_evidence_tuple_and_classes_accept_lists(vlm_request):
    request = VlmRequest(
        query=vlm_request.query,
        classes=["clean", "dirty"],
        evidence=[Evidence("dirty", vlm_request.query, 0.7)],
        class_scores={"dirty": 1.0},
    )
    assert request.classes == ("clean", "dirty") and isinstance(request.evidence, tuple)


def test_numpy_numbers_become_plain_python_ones(vlm_request):
    import numpy as np

    request = replace(vlm_request, temperature=np.float32(0.5), top_p=np.float64(0.8), max_new_tokens=np.int64(7))
    assert (request.temperature, request.top_p, request.max_new_tokens) == (0.5, 0.8, 7)
    assert [type(v) for v in (request.temperature, request.top_p, request.max_new_tokens)] == [float, float, int]


def _evidence_of(request, part):
    return next(e for e in request.evidence if e.image is part.image)


def test_with_a_flag_key_the_callers_prompts_go_verbatim_after_the_images(vlm_settings, vlm_request):
    """The RAG Vision Engine's conversation: its system prompt, then the query and the evidence crops,
    then its user prompt — no template, no placeholder filled, no word of Loupe's."""
    system = "You inspect cars.\nOutput only:\nVisibleDirtyFlag = True\nor\nVisibleDirtyFlag = False\n"
    user = "Is it dirty? $classes stays as written.\nVisibleDirtyFlag: True or False\n"
    conversation = build_conversation(replace(vlm_request, system_prompt=system, user_prompt=user, flag_key="VisibleDirtyFlag"))
    assert conversation.system == system
    assert [p.role for p in conversation.parts if isinstance(p, ImagePart)] == ["query"] + ["evidence"] * 4
    assert conversation.images == vlm_request.images
    assert [p.text for p in conversation.parts if isinstance(p, TextPart)] == [user]
    assert conversation.text_with_placeholders() == "<image>" * 5 + user


def test_a_flag_key_must_be_a_word(vlm_request):
    with pytest.raises(VlmRequestError, match="flag key"):
        replace(vlm_request, flag_key="  ")
