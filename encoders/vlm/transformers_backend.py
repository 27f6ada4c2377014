"""Local VLMs through transformers: Qwen2-VL-2B-Instruct and its kin (`transformers:<model>`).

`AutoModelForImageTextToText` picks the class from the checkpoint's config
(Qwen2VLForConditionalGeneration, Qwen2.5-VL, …) and `AutoProcessor` its processor and chat
template, so the prompt is laid out the way the model was trained. GPUs run the weights in bf16
(fp16 where bf16 is missing), CPUs in float32. Imports torch: workers only.
"""

from __future__ import annotations

import threading

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from encoders.images import to_rgb
from encoders.vlm.base import VisionLanguageModel, VlmRequest
from encoders.vlm.prompting import Conversation, ImagePart
from encoders.vlm.spec import VlmSpec
from encoders.vlm.weights import resolve_model_directory, vlm_weights_missing_error


class TransformersVlm(VisionLanguageModel):
    def __init__(self, spec: VlmSpec, *, device: str):
        self.spec = str(spec)
        self.device = device
        self.directory = resolve_model_directory(spec)
        try:
            self.processor = AutoProcessor.from_pretrained(self.directory, local_files_only=True)
            self.model = (
                AutoModelForImageTextToText.from_pretrained(
                    self.directory, local_files_only=True, dtype=_weights_dtype(device)
                )
                .to(device)
                .eval()
            )
        except (OSError, ValueError, KeyError) as error:  # a file missing or not loadable as a VLM
            raise vlm_weights_missing_error(
                spec, self.directory, [], reason=f"Loading failed: {type(error).__name__}: {error}"
            ) from error
        if not (self.processor.chat_template or getattr(self.processor.tokenizer, "chat_template", None)):
            raise vlm_weights_missing_error(spec, self.directory, ["chat_template.jinja or chat_template.json"])
        # One generation at a time per loaded model: concurrent ones would only compete for the same
        # GPU memory and cores.
        self._lock = threading.Lock()

    def chat_messages(self, conversation: Conversation) -> list[dict]:
        """The conversation as Hugging Face chat messages; images are `{"type": "image"}` slots
        filled, in order, by the images passed to the processor."""
        content = [
            {"type": "image"} if isinstance(part, ImagePart) else {"type": "text", "text": part.text}
            for part in conversation.parts
        ]
        return [
            {"role": "system", "content": [{"type": "text", "text": conversation.system}]},
            {"role": "user", "content": content},
        ]

    def model_inputs(self, conversation: Conversation):
        """The tokenized prompt with its pixel values: what `generate` is called with."""
        prompt = self.processor.apply_chat_template(
            self.chat_messages(conversation), tokenize=False, add_generation_prompt=True
        )
        images = [to_rgb(image) for image in conversation.images]
        return self.processor(text=[prompt], images=images, return_tensors="pt").to(self.device)

    def generate(self, conversation: Conversation, request: VlmRequest) -> str:
        inputs = self.model_inputs(conversation)
        with self._lock, torch.inference_mode():
            output = self.model.generate(**inputs, **generation_kwargs(request))
        new_tokens = output[:, inputs["input_ids"].shape[1] :]  # the prompt is not part of the answer
        return self.processor.batch_decode(new_tokens, skip_special_tokens=True)[0]


def generation_kwargs(request: VlmRequest) -> dict:
    if request.temperature == 0:
        return {
            "max_new_tokens": request.max_new_tokens,
            "do_sample": False,
            "temperature": None,
            "top_p": None,
            "top_k": None,
        }
    # top_k off: Qwen2-VL-Instruct's generation_config.json ships top_k=1 (greedy in disguise), which
    # would silently ignore the request's temperature and top_p.
    return {
        "max_new_tokens": request.max_new_tokens,
        "do_sample": True,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "top_k": 0,
    }


def _weights_dtype(device: str) -> torch.dtype:
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32  # CPU and mps: float32, as the encoders run there
