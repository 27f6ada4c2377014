from django.conf import settings
from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from albums import hooks
from albums.exif_info import image_info
from albums.models import POOLING_CHOICES, STORAGE_CHOICES, Album, AlbumMembership, Image
from albums.roles import Role
from config.params import MAX_ID
from encoders.catalog import responsible_use_notice


class AlbumSerializer(serializers.ModelSerializer):
    role = serializers.CharField(read_only=True)
    owner = serializers.CharField(source="owner.username", read_only=True)
    responsible_use = serializers.SerializerMethodField(help_text="the backbone's use restrictions, when it has any")

    class Meta:
        model = Album
        fields = [
            "id", "name", "description", "owner", "role", "encoder_spec", "min_search_score",
            "max_search_results", "use_query_optimization", "pooling", "vector_storage", "responsible_use", "generation",
            "active_model_id", "created_at", "updated_at",
        ]
        read_only_fields = ["generation", "active_model_id", "created_at", "updated_at"]

    def get_responsible_use(self, album: Album) -> str | None:
        return responsible_use_notice(album.encoder_spec)


class AlbumListItemSerializer(AlbumSerializer):
    """A row of the album list: the list counts images (one query for the page); one album's own
    responses carry `index` counts instead, so the count is in the schema only where it is sent."""

    image_count = serializers.IntegerField(read_only=True)

    class Meta(AlbumSerializer.Meta):
        fields = [*AlbumSerializer.Meta.fields, "image_count"]


class IndexSummarySerializer(serializers.Serializer):
    """Reads an albums.hooks.IndexSummary."""

    search_model_id = serializers.CharField(allow_null=True)
    search_model = serializers.CharField(allow_null=True)
    images = serializers.DictField(child=serializers.IntegerField())
    active_job = serializers.JSONField(allow_null=True)  # the jobs API's own serialization of the job
    rebuilding = serializers.BooleanField()
    last_failed_rebuild = serializers.JSONField(
        allow_null=True, help_text="the last rebuild when it failed and nobody dismissed it: {job_id, encoder_spec, message, finished_at}")
    model_fetch = serializers.JSONField(
        allow_null=True,
        help_text="the album encoder's weights while they download: {status, done, total, percent} (bytes)")


class AlbumDetailSerializer(AlbumSerializer):
    index = serializers.SerializerMethodField(help_text="image counts by status, the model search uses, the job under way")

    class Meta(AlbumSerializer.Meta):
        fields = [*AlbumSerializer.Meta.fields, "index"]

    def get_index(self, album: Album) -> dict:
        return IndexSummarySerializer(hooks.index_summary(album=album)).data


class AlbumWriteSerializer(serializers.Serializer):
    """Input only: services validate and write."""

    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    encoder_spec = serializers.CharField(max_length=300, required=False)
    min_search_score = serializers.FloatField(required=False, allow_null=True, min_value=-1.0, max_value=1.0)
    max_search_results = serializers.IntegerField(required=False, min_value=1, help_text="at most LOUPE_MAX_SEARCH_RESULTS")
    use_query_optimization = serializers.BooleanField(required=False)
    pooling = serializers.ChoiceField(choices=POOLING_CHOICES, required=False,
                                      help_text="dense backbones only: mean, masked (alpha-channel foreground) or regions")
    vector_storage = serializers.ChoiceField(choices=STORAGE_CHOICES, required=False)

    def validate(self, attrs):
        unknown = set(self.initial_data) - set(self.fields)
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field."] for name in sorted(unknown)})
        return attrs


class MemberSerializer(serializers.ModelSerializer):
    user_id = serializers.IntegerField(source="user.id", read_only=True)
    username = serializers.CharField(source="user.username", read_only=True)

    class Meta:
        model = AlbumMembership
        fields = ["user_id", "username", "role", "created_at"]


class MemberWriteSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=Role.choices, default=Role.VIEWER)


class PlaceSerializer(serializers.Serializer):
    lat = serializers.FloatField(help_text="decimal degrees, north positive")
    lon = serializers.FloatField(help_text="decimal degrees, east positive")


class ImageInfoSerializer(serializers.Serializer):
    """The metadata as people read it (albums/exif_info.py); null where unknown."""

    camera = serializers.CharField(allow_null=True, help_text='"Canon EOS 5D Mark IV"')
    lens = serializers.CharField(allow_null=True)
    exposure = serializers.CharField(allow_null=True, help_text='"1/250 s · f/2.8 · ISO 400 · 35 mm", what was recorded')
    taken = serializers.DateTimeField(allow_null=True, help_text="EXIF capture time")
    place = PlaceSerializer(allow_null=True, help_text="GPS position")
    size = serializers.CharField(allow_null=True, help_text='"4000 × 3000", upright')


class ImageLabelSerializer(serializers.Serializer):
    """A label on an image, from a support set of its album (search.rag writes them)."""

    support_set = serializers.IntegerField()
    support_set_name = serializers.CharField()
    label = serializers.CharField(help_text="the class")
    state = serializers.ChoiceField(choices=hooks.LabelState.choices)
    margin = serializers.FloatField(help_text="top score minus the second: how sure the prediction was")


class ImageSerializer(serializers.ModelSerializer):
    file_url = serializers.SerializerMethodField()
    thumbnail_url = serializers.SerializerMethodField()
    info = serializers.SerializerMethodField(help_text="camera, lens, exposure, capture time, place and size, readable")
    labels = serializers.SerializerMethodField(
        help_text="the labels the album's support sets gave it: [{support_set, label, state, margin}]")

    class Meta:
        model = Image
        fields = [
            "id", "album", "original_name", "sha256", "bytes", "width", "height", "mime", "status", "failure_reason",
            "taken_at", "camera", "exif", "info", "created_at", "file_url", "thumbnail_url", "labels",
        ]

    @staticmethod
    def context_for(*, album, images) -> dict:
        """The serializer's context for these images of `album`: their labels, read in one query."""
        return {"labels": hooks.image_labels(album=album, image_ids=[image.pk for image in images])}

    @extend_schema_field(ImageLabelSerializer(many=True))
    def get_labels(self, image: Image) -> list[dict]:
        return self.context.get("labels", {}).get(image.pk, [])

    @extend_schema_field(ImageInfoSerializer)
    def get_info(self, image: Image) -> dict:
        info = image_info(exif=image.exif, width=image.width, height=image.height, taken_at=image.taken_at,
                          camera=image.camera)
        return ImageInfoSerializer(info).data

    def get_file_url(self, image: Image) -> str:
        return reverse("api:image-file", args=[image.pk])

    def get_thumbnail_url(self, image: Image) -> str:
        return reverse("api:image-thumbnail", args=[image.pk])


class UploadResultSerializer(serializers.Serializer):
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=["created", "duplicate", "rejected"])
    image_id = serializers.IntegerField(allow_null=True)
    reason = serializers.CharField(allow_blank=True)
    code = serializers.CharField(allow_blank=True)


class UploadResponseSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    rejected = serializers.IntegerField()
    results = UploadResultSerializer(many=True)


# --- Bulk actions on a selection of images. The views read their input through config.params
# (parse_id_list: one clear message per bad id, from JSON or a form's repeated field); these
# serializers describe it in the schema.

def _image_ids_field() -> serializers.ListField:
    return serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=MAX_ID), min_length=1,
                                 max_length=settings.LOUPE_MAX_BULK_IMAGES,
                                 help_text="image ids, 1 to LOUPE_MAX_BULK_IMAGES; ids not in the album are reported, never touched")


class ImageIdsSerializer(serializers.Serializer):
    image_ids = _image_ids_field()


class ImageCopySerializer(serializers.Serializer):
    image_ids = _image_ids_field()
    target_album_id = serializers.IntegerField(min_value=1, max_value=MAX_ID, help_text="an album you can edit")


class BulkDeleteResponseSerializer(serializers.Serializer):
    deleted = serializers.IntegerField()
    missing = serializers.ListField(child=serializers.IntegerField(), help_text="ids that are not images of this album")


class CopyResponseSerializer(serializers.Serializer):
    copied = serializers.IntegerField()
    skipped_duplicates = serializers.IntegerField(help_text="the target album holds the same bytes already")
    missing = serializers.ListField(child=serializers.IntegerField(),
                                    help_text="ids that are not images of the source album, or whose file is gone")
