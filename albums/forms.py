from django import forms

from albums.models import Album
from albums.roles import Role
from albums.services import album_default_encoder, album_default_fallback_note
from encoders.catalog import SAPIENS2_RESPONSIBLE_USE, responsible_use_notice
from encoders.errors import EncoderError
from encoders.registry import TEXT_CONCEPTS, TEXT_EMBEDDING, known_specs, text_search
from encoders.weights import default_fetch_allowed, downloads_allowed


CUSTOM_ENCODER = "(custom)"


def encoder_choices(current: str | None = None) -> list:
    """Grouped for the select: installed encoders first, then the catalog's others marked "needs
    download" (saving one is refused with the reason unless downloads are allowed), then "(custom)";
    each with what it is good for."""
    installed, missing = [], []
    for entry in known_specs():
        label = entry["spec"] + _TEXT_LABELS[entry.get("text_search")]
        if responsible_use_notice(entry["spec"]):
            label += " — license: no biometric or identity use"
        (installed if entry.get("weights_present", False) else missing).append((entry["spec"], label + (
            "" if entry.get("weights_present", False) else " — needs download")))
    groups = []
    known = {value for value, _ in installed + missing}
    if current and current not in known:
        groups.append(("This album's", [(current, current)]))
    groups.append(("Installed", installed))
    if missing:
        if downloads_allowed():
            where = "downloads on first use"
        elif default_fetch_allowed():
            where = "the default text encoder downloads by itself; an operator places the others"
        else:
            where = "downloads are off: an operator places the weights"
        groups.append((f"Needs download ({where})", missing))
    return [*groups, (CUSTOM_ENCODER, "(custom) — a spec of your own, e.g. a checkpoint in the models folder")]


def flat_choices(choices: list) -> list[tuple[str, str]]:
    """The (value, label) pairs of a grouped choice list, in order."""
    return [pair for value, label in choices for pair in (label if isinstance(label, list) else [(value, label)])]


class EncoderChoiceMixin:
    """The encoder select and, for "(custom)", the spec typed beside it; services validate the spec."""

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("encoder_spec") == CUSTOM_ENCODER:
            custom = (cleaned.get("custom_encoder_spec") or "").strip()
            if not custom:
                self.add_error("custom_encoder_spec", "Type the encoder spec, e.g. open-clip:ViT-B-16/laion2b_s34b_b88k.")
            cleaned["encoder_spec"] = custom
        cleaned.pop("custom_encoder_spec", None)
        return cleaned


def _custom_encoder_field() -> forms.CharField:
    return forms.CharField(label="Custom encoder spec", required=False, max_length=300,
                           help_text="backend:model[/weights] — see docs/encoders.md")


class AlbumCreateForm(EncoderChoiceMixin, forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    encoder_spec = forms.ChoiceField(label="Encoder", required=False, help_text="Words need an encoder with a text tower (CLIP, "
                                     "OpenCLIP, SigLIP); the others search by example image.")
    custom_encoder_spec = _custom_encoder_field()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["encoder_spec"].choices = encoder_choices()
        self.fields["encoder_spec"].initial = album_default_encoder()
        if note := album_default_fallback_note():
            self.fields["encoder_spec"].help_text = note


class AlbumSettingsForm(EncoderChoiceMixin, forms.ModelForm):
    encoder_spec = forms.ChoiceField(
        label="Encoder",
        help_text="Switching the encoder re-embeds every image in the background; search keeps using the old one until then.",
    )
    custom_encoder_spec = _custom_encoder_field()

    class Meta:
        model = Album
        fields = [
            "name", "description", "encoder_spec", "pooling", "vector_storage", "min_search_score", "max_search_results",
            "use_query_optimization",
        ]
        labels = {
            "pooling": "Pooling (dense backbones)",
            "vector_storage": "Vector index",
            "min_search_score": "Minimum search score",
            "max_search_results": "Maximum results",
            "use_query_optimization": "Query optimization (prompt ensembling)",
        }
        help_texts = {
            "min_search_score": "Empty: the encoder's default threshold.",
            "pooling": "Masked uses the image's alpha channel as the person mask (mean when there is none); regions "
            "also keeps a 4×3 grid of region tokens so you can search by a box on an image. Changing it re-indexes.",
            "vector_storage": "How vectors are indexed; results are always re-scored in full precision. Recall and "
            "memory of each kind: docs/benchmarks.md. Changing it re-indexes.",
        }
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["encoder_spec"].choices = encoder_choices(self.instance.encoder_spec if self.instance else None)
        # Left out of a post (an older page, a script): keep what the album has.
        for name in ("pooling", "vector_storage"):
            self.fields[name].required = False
        if self.instance and self.instance.pk and not _has_text(self.instance.encoder_spec):
            ensembling = self.fields["use_query_optimization"]
            ensembling.disabled = True  # a disabled field keeps the album's value
            ensembling.widget.attrs["title"] = "This encoder has no text tower: there are no text queries to ensemble."
            ensembling.help_text = "Only encoders that search by words use it."

    def clean_pooling(self):
        return self.cleaned_data.get("pooling") or self.instance.pooling

    def clean_vector_storage(self):
        return self.cleaned_data.get("vector_storage") or self.instance.vector_storage

    @property
    def responsible_use_text(self) -> str:
        return SAPIENS2_RESPONSIBLE_USE

    @property
    def responsible_use(self) -> str | None:
        spec = self.data.get("encoder_spec") if self.is_bound else None
        return responsible_use_notice(spec or self.instance.encoder_spec)


class MemberAddForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.VIEWER)


_TEXT_LABELS = {
    TEXT_EMBEDDING: " — words and images",
    TEXT_CONCEPTS: " — images, and words for 1,000 ImageNet concepts",
    None: " — by example image only",
}


def _has_text(spec: str) -> bool:
    """Whether the spec embeds words (prompt ensembling has something to average); concept search
    (EfficientNet-Lite0) matches words to classes instead."""
    try:
        return text_search(spec) == TEXT_EMBEDDING
    except EncoderError:
        return True  # an unknown spec: do not lock the setting
