from django import forms

from albums.models import Album
from albums.roles import Role


def encoder_choices(current: str | None = None) -> list[tuple[str, str]]:
    from encoders.catalog import responsible_use_notice
    from encoders.registry import known_specs

    choices = []
    for entry in known_specs():
        label = entry["spec"]
        if not entry.get("weights_present", False):
            label += " (weights not installed)"
        if responsible_use_notice(entry["spec"]):
            label += " — license: no biometric or identity use"
        choices.append((entry["spec"], label))
    if current and current not in {c[0] for c in choices}:
        choices.insert(0, (current, current))
    return choices


class AlbumCreateForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))


class AlbumSettingsForm(forms.ModelForm):
    encoder_spec = forms.ChoiceField(
        label="Encoder",
        help_text="Switching the encoder re-embeds every image in the background; search keeps using the old one until then.",
    )

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

    def clean_pooling(self):
        return self.cleaned_data.get("pooling") or self.instance.pooling

    def clean_vector_storage(self):
        return self.cleaned_data.get("vector_storage") or self.instance.vector_storage

    @property
    def responsible_use_text(self) -> str:
        from encoders.catalog import SAPIENS2_RESPONSIBLE_USE

        return SAPIENS2_RESPONSIBLE_USE

    @property
    def responsible_use(self) -> str | None:
        from encoders.catalog import responsible_use_notice

        spec = self.data.get("encoder_spec") if self.is_bound else None
        return responsible_use_notice(spec or self.instance.encoder_spec)


class MemberAddForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.VIEWER)
