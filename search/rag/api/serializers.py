from django.conf import settings
from django.urls import reverse
from rest_framework import serializers

from config.serializer_fields import Base64Field
from search.rag.classify import ClassifyParams
from search.rag.models import MAX_RESOLUTION, MIN_PATCH_SIZE, MIN_RESOLUTION, PatchSource, SupportClass, SupportImage, SupportSet

MAX_PROMPT = 8000


class StrictSerializer(serializers.Serializer):
    """Unknown fields are an error, not silently dropped: a typo in a field name should not give
    a result computed with the default."""

    def validate(self, attrs):
        unknown = set(getattr(self, "initial_data", {})) - set(self.fields)
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field."] for name in sorted(unknown)})
        return attrs


class SupportImageSerializer(serializers.ModelSerializer):
    original_name = serializers.CharField(source="image.original_name", read_only=True)
    width = serializers.IntegerField(source="image.width", read_only=True)
    height = serializers.IntegerField(source="image.height", read_only=True)
    file_url = serializers.SerializerMethodField()
    thumbnail_url = serializers.SerializerMethodField()

    class Meta:
        model = SupportImage
        fields = [
            "id", "support_class", "image", "original_name", "width", "height", "status", "failure_reason",
            "patch_count", "created_at", "file_url", "thumbnail_url",
        ]

    def get_file_url(self, obj) -> str:
        return reverse("api:image-file", args=[obj.image_id])

    def get_thumbnail_url(self, obj) -> str:
        return reverse("api:image-thumbnail", args=[obj.image_id])


class SupportClassSerializer(serializers.ModelSerializer):
    images = serializers.SerializerMethodField()

    class Meta:
        model = SupportClass
        fields = ["id", "support_set", "label", "position", "created_at", "images"]

    def get_images(self, obj) -> list[dict]:
        images = getattr(obj, "support_images", None)
        if images is None:
            images = obj.images.select_related("image").order_by("created_at", "id")
        return SupportImageSerializer(images, many=True).data


class SupportSetSerializer(serializers.ModelSerializer):
    role = serializers.CharField(read_only=True)

    class Meta:
        model = SupportSet
        fields = [
            "id", "album", "name", "description", "encoder_spec", "patch_source", "support_resolution", "patch_size",
            "use_vlm", "flag_true_label", "generation", "role", "created_at", "updated_at",
        ]


class SupportSetListItemSerializer(SupportSetSerializer):
    """A row of the support-set list, with its counts; one set's own responses list its classes."""

    class_count = serializers.IntegerField(read_only=True)
    image_count = serializers.IntegerField(read_only=True)

    class Meta(SupportSetSerializer.Meta):
        fields = [*SupportSetSerializer.Meta.fields, "class_count", "image_count"]


class SupportSetDetailSerializer(SupportSetSerializer):
    classes = serializers.SerializerMethodField()
    status = serializers.SerializerMethodField()
    vlm = serializers.SerializerMethodField()

    class Meta(SupportSetSerializer.Meta):
        fields = [*SupportSetSerializer.Meta.fields, "classes", "status", "vlm"]

    def get_classes(self, obj) -> list[dict]:
        return SupportClassSerializer(self.context["classes"], many=True).data

    def get_status(self, obj) -> dict:
        return self.context["status"]

    def get_vlm(self, obj) -> str | None:
        """The server's vision-language model, or null when none is configured."""
        return settings.LOUPE_VLM or None


class SupportSetWriteSerializer(StrictSerializer):
    album = serializers.IntegerField(min_value=1, required=False)
    name = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(required=False, allow_blank=True)
    encoder_spec = serializers.CharField(max_length=300, required=False, allow_blank=True)
    patch_source = serializers.ChoiceField(choices=PatchSource.choices, required=False)
    support_resolution = serializers.IntegerField(min_value=MIN_RESOLUTION, max_value=MAX_RESOLUTION, required=False)
    patch_size = serializers.IntegerField(min_value=MIN_PATCH_SIZE, max_value=MAX_RESOLUTION, required=False)
    use_vlm = serializers.BooleanField(required=False)
    flag_true_label = serializers.CharField(
        max_length=100, required=False, allow_blank=True,
        help_text="the class meaning flag = true for the RAG Vision compatible API's flagKey when no VLM answers",
    )


class SupportClassWriteSerializer(StrictSerializer):
    label = serializers.CharField(max_length=100, required=False)
    position = serializers.IntegerField(min_value=0, max_value=10_000, required=False)


class SupportAddResultSerializer(serializers.Serializer):
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=["added", "exists", "rejected"])
    support_image_id = serializers.IntegerField(allow_null=True)
    image_id = serializers.IntegerField(allow_null=True)
    code = serializers.CharField(allow_blank=True)
    reason = serializers.CharField(allow_blank=True)


class SupportAddResponseSerializer(serializers.Serializer):
    added = serializers.IntegerField()
    rejected = serializers.IntegerField()
    results = SupportAddResultSerializer(many=True)


_defaults = ClassifyParams()


class ClassifyRequestSerializer(StrictSerializer):
    image = serializers.FileField(required=False, help_text="the query image (multipart)")
    image_base64 = Base64Field(required=False, help_text="the query image, base64 (a data URL is fine)")
    image_id = serializers.IntegerField(required=False, min_value=1, help_text="an album image you can see")
    k = serializers.IntegerField(required=False, min_value=1, max_value=200, default=_defaults.k,
                                 help_text="support patches per class behind each class score")
    max_patches_per_class = serializers.IntegerField(required=False, min_value=0, max_value=20,
                                                     default=_defaults.max_patches_per_class,
                                                     help_text="evidence crops per class shown to the VLM")
    input_resolution = serializers.IntegerField(required=False, min_value=MIN_RESOLUTION, max_value=MAX_RESOLUTION,
                                                allow_null=True, default=None)
    score_temperature = serializers.FloatField(required=False, min_value=0.001, max_value=10, allow_null=True, default=None)
    use_vlm = serializers.BooleanField(required=False, allow_null=True, default=None)
    system_prompt = serializers.CharField(required=False, allow_blank=True, max_length=MAX_PROMPT, default="")
    user_prompt = serializers.CharField(required=False, allow_blank=True, max_length=MAX_PROMPT, default="")
    temperature = serializers.FloatField(required=False, min_value=0, max_value=2, default=_defaults.temperature)
    top_p = serializers.FloatField(required=False, min_value=0.01, max_value=1, default=_defaults.top_p)
    max_new_tokens = serializers.IntegerField(required=False, min_value=1, max_value=4096, default=_defaults.max_new_tokens)

    def validate(self, attrs):
        attrs = super().validate(attrs)
        given = [name for name in ("image", "image_base64", "image_id") if attrs.get(name) not in (None, "")]
        if len(given) != 1:
            raise serializers.ValidationError(
                {"image": ["Give exactly one query image: image, image_base64 or image_id."]}
            )
        return attrs

    def params(self) -> ClassifyParams:
        v = self.validated_data
        return ClassifyParams(**{name: v[name] for name in ClassifyParams.__dataclass_fields__ if name in v})
