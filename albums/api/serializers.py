from django.urls import reverse
from rest_framework import serializers

from albums import hooks
from albums.models import POOLING_CHOICES, STORAGE_CHOICES, Album, AlbumMembership, Image
from albums.roles import Role
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


class ImageSerializer(serializers.ModelSerializer):
    file_url = serializers.SerializerMethodField()
    thumbnail_url = serializers.SerializerMethodField()

    class Meta:
        model = Image
        fields = [
            "id", "album", "original_name", "sha256", "bytes", "width", "height", "mime", "status", "failure_reason",
            "taken_at", "camera", "exif", "created_at", "file_url", "thumbnail_url",
        ]

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
