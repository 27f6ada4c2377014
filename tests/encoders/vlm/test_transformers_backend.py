"""`transformers:` with a tiny real Qwen2-VL (random weights) loaded through `get_vlm`: the product's
own loading, prompt building, generation and decoding. The text it writes is noise, so these tests
assert the pipeline, never the words."""

from __future__ import annotations

import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest

from encoders.vlm import VlmAnswer, VlmWeightsMissingError, get_vlm
from encoders.vlm.prompting import build_conversation
from tests.encoders.vlm.conftest import TINY_QWEN25_SPEC, TINY_QWEN_ID, TINY_QWEN_SPEC

EVIDENCE_LINE = re.compile(r'Evidence (\d+) — class "([^"]+)" \(similarity ([0-9.]+)\):\n<\|vision_start\|>')


def test_answers_through_the_real_loading_code(tiny_vlm_settings, vlm_request):
    vlm = get_vlm(TINY_QWEN_SPEC)
    answer = vlm.answer(vlm_request)

    assert type(vlm).__name__ == "TransformersVlm"
    assert type(vlm.model).__name__ == "Qwen2VLForConditionalGeneration"
    assert isinstance(answer, VlmAnswer) and answer.model == TINY_QWEN_SPEC
    assert isinstance(answer.raw, str)
    # Noise seldom names a class; when it does, the flag is that class, never an invented one.
    assert answer.flag is None or answer.flag in vlm_request.classes
    assert answer.parsed == (answer.flag is not None)
    # Only new tokens are decoded: the prompt (hundreds of characters) is not in the answer.
    assert "Evidence 1" not in answer.raw and len(answer.raw) <= vlm_request.max_new_tokens


def test_qwen2_5_vl_loads_through_the_same_code(tiny_vlm_settings, vlm_request):
    vlm = get_vlm(TINY_QWEN25_SPEC)
    assert type(vlm.model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    inputs = vlm.model_inputs(build_conversation(vlm_request))
    assert inputs["image_grid_thw"].shape[0] == 1 + len(vlm_request.evidence)
    answer = vlm.answer(replace(vlm_request, temperature=0, max_new_tokens=5))
    assert answer.model == TINY_QWEN25_SPEC and len(answer.raw) <= 5


def test_the_prompt_carries_every_evidence_label_in_order_before_its_image(tiny_vlm_settings, vlm_request):
    vlm = get_vlm(TINY_QWEN_SPEC)
    inputs = vlm.model_inputs(build_conversation(vlm_request))
    prompt = vlm.processor.tokenizer.decode(inputs["input_ids"][0], skip_special_tokens=False)

    # One image per slot: the query and each crop, each one vision block in the tokens.
    assert inputs["image_grid_thw"].shape[0] == 1 + len(vlm_request.evidence)
    assert prompt.count("<|vision_start|>") == 1 + len(vlm_request.evidence)
    image_pad = vlm.processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    tokens_per_image = (inputs["image_grid_thw"].prod(dim=1) // 4).tolist()  # 2×2 spatial merge
    assert int((inputs["input_ids"][0] == image_pad).sum()) == sum(tokens_per_image)

    system_turn, user_turn = prompt.split("<|im_start|>user\n")
    assert system_turn.startswith("<|im_start|>system\nYou are a careful visual inspector.")
    assert user_turn.startswith("Query image:\n<|vision_start|>")
    assert EVIDENCE_LINE.findall(user_turn) == [
        ("1", "clean", "0.91"),
        ("2", "clean", "0.87"),
        ("3", "dirty", "0.82"),
        ("4", "cracked", "0.50"),
    ]
    assert user_turn.index("Query image:") < user_turn.index("Evidence 1") < user_turn.index("Which class")
    assert '- "dirty": 0.300' in user_turn and 'Class: <one of "clean", "dirty", "cracked">' in user_turn
    assert prompt.endswith("<|im_end|>\n<|im_start|>assistant\n")  # the model speaks next


def test_greedy_is_repeatable_and_max_new_tokens_bounds_the_answer(tiny_vlm_settings, vlm_request):
    vlm = get_vlm(TINY_QWEN_SPEC)
    greedy = [vlm.answer(_with(vlm_request, temperature=0, max_new_tokens=12)).raw for _ in range(2)]
    assert greedy[0] == greedy[1]
    # The tiny tokenizer has one token per byte, and a byte decodes to at most one character.
    for limit in (1, 4):
        assert len(vlm.answer(_with(vlm_request, temperature=0, max_new_tokens=limit)).raw) <= limit


def test_sampling_honours_temperature_despite_the_checkpoints_top_k(tiny_vlm_settings, vlm_request):
    # The tiny checkpoint, like Qwen2-VL-Instruct's, ships top_k=1, which alone would make every
    # sampled answer the greedy one.
    vlm = get_vlm(TINY_QWEN_SPEC)
    assert vlm.model.generation_config.top_k == 1
    sampled = {vlm.answer(_with(vlm_request, temperature=1.0, top_p=1.0, max_new_tokens=12)).raw for _ in range(3)}
    assert len(sampled) >= 2


def test_one_model_per_spec_and_device_even_under_concurrent_first_calls(tiny_vlm_settings):
    with ThreadPoolExecutor(4) as pool:
        models = list(pool.map(lambda _: get_vlm(TINY_QWEN_SPEC), range(4)))
    assert all(model is models[0] for model in models)
    assert get_vlm(TINY_QWEN_SPEC, device="cpu") is models[0]


def test_missing_weights_name_the_directory_and_the_files(vlm_settings):
    with pytest.raises(VlmWeightsMissingError) as raised:
        get_vlm("transformers:Qwen/Qwen2-VL-2B-Instruct")
    directory = vlm_settings.LOUPE_MODELS_DIR / "Qwen" / "Qwen2-VL-2B-Instruct"
    error = raised.value
    assert f"{directory}/" in error.message and "does not exist" in error.message
    assert "config.json" in error.message and "*.safetensors" in error.message
    assert error.code == "vlm_weights_missing" and error.extra["directory"] == str(directory)
    assert str(directory / "config.json") in error.extra["files"]


def test_an_incomplete_directory_names_only_what_is_missing(vlm_settings):
    directory = vlm_settings.LOUPE_MODELS_DIR / "acme" / "half-copied"
    directory.mkdir(parents=True)
    (directory / "config.json").write_text("{}")
    (directory / "tokenizer.json").write_text("{}")
    with pytest.raises(VlmWeightsMissingError) as raised:
        get_vlm("transformers:acme/half-copied")
    message = raised.value.message
    assert "is incomplete" in message
    assert "*.safetensors" in message and "preprocessor_config.json or processor_config.json" in message
    assert "it needs config.json" not in message and "tokenizer.json or" not in message


def test_an_absolute_directory_loads_once_its_files_arrive(vlm_settings, tiny_vlm_models_dir, tmp_path, vlm_request):
    directory = tmp_path / "elsewhere" / "qwen2-vl"
    spec = f"transformers:{directory}"
    with pytest.raises(VlmWeightsMissingError, match=re.escape(str(directory))):
        get_vlm(spec)
    shutil.copytree(tiny_vlm_models_dir / TINY_QWEN_ID, directory)  # the operator places the files

    answer = get_vlm(spec).answer(_with(vlm_request, max_new_tokens=3))  # the failure was not cached
    assert answer.model == spec and len(answer.raw) <= 3


def _with(request, **changes):
    return replace(request, **changes)
