"""SigLIP and SigLIP 2: a Hugging Face repository's files under siglip/<hf id>/."""

from encoders.layouts import WeightsLayout


class SiglipWeights(WeightsLayout):
    def where_else(self, spec) -> str:
        return " with the rest of the Hugging Face repository's files (tokenizer and processor configs)"
