from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models.functions import Lower

from albums.roles import Role
from encoders.pooling import MASKED, MEAN, REGIONS
from encoders.registry import default_encoder_spec

POOLING_CHOICES = [
    (MEAN, "Global mean of the patch tokens"),
    (MASKED, "Mean over the foreground (alpha-channel mask)"),
    (REGIONS, "Global mean + a 4×3 grid of region tokens (box queries)"),
]
# Only kinds whose recall@10 stays within 1 % of float32 exact search (docs/benchmarks.md, quantization).
STORAGE_CHOICES = [
    ("vector", "float32 HNSW index"),
    ("halfvec", "float16 HNSW index (half the index memory)"),
    ("binary", "binary-quantized Hamming HNSW index, re-ranked in float32"),
]


def _default_encoder_spec() -> str:
    return default_encoder_spec()


class Album(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="owned_albums")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    encoder_spec = models.CharField(max_length=300, default=_default_encoder_spec)
    # Null means "the encoder's default" (SigLIP's calibrated scale and CLIP cosines differ).
    min_search_score = models.FloatField(null=True, blank=True)
    max_search_results = models.PositiveIntegerField(default=100, validators=[MinValueValidator(1)])
    use_query_optimization = models.BooleanField(default=True)
    # How a dense backbone's token grid becomes what is stored (encoders/pooling.py), and how vectors
    # are indexed (workers/vector_store.py). Both are part of the vectors' model_id, so changing either
    # rebuilds the album like an encoder change.
    pooling = models.CharField(max_length=16, choices=POOLING_CHOICES, default=MEAN)
    vector_storage = models.CharField(max_length=16, choices=STORAGE_CHOICES, default="vector")
    # Bumped whenever the encoder changes; work started under an older generation writes nothing.
    generation = models.PositiveIntegerField(default=1)
    # The model whose vectors search reads. A rebuild writes a new model's vectors beside these and
    # switches this field only once they cover every image, so search never goes dark.
    active_model_id = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["owner", "created_at"])]

    def clean(self) -> None:
        # A setting, not a field validator: read per check, and every result is a candidate fetched and scored.
        if self.max_search_results and self.max_search_results > settings.LOUPE_MAX_SEARCH_RESULTS:
            raise ValidationError({"max_search_results": f"At most {settings.LOUPE_MAX_SEARCH_RESULTS} results per search."})

    def __str__(self) -> str:
        return self.name


class AlbumMembership(models.Model):
    album = models.ForeignKey(Album, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="album_memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["album", "user"], name="membership_unique_album_user"),
            models.CheckConstraint(condition=models.Q(role__in=Role.values), name="membership_role_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.role} of {self.album}"


def image_upload_path(instance: "Image", filename: str) -> str:
    # The stored name is derived from the content hash, never from the client's file name.
    suffix = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp", "image/gif": ".gif"}.get(
        instance.mime, ""
    )
    return f"albums/{instance.album_id}/{instance.sha256[:2]}/{instance.sha256}{suffix}"


def thumbnail_upload_path(instance: "Image", filename: str) -> str:
    return f"thumbnails/{instance.album_id}/{instance.sha256[:2]}/{instance.sha256}.webp"


class Image(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        INDEXED = "indexed", "Indexed"
        FAILED = "failed", "Failed"

    album = models.ForeignKey(Album, on_delete=models.CASCADE, related_name="images")
    file = models.FileField(upload_to=image_upload_path, max_length=300)
    original_name = models.CharField(max_length=255)
    sha256 = models.CharField(max_length=64)
    bytes = models.BigIntegerField()
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    mime = models.CharField(max_length=64)
    exif = models.JSONField(default=dict, blank=True)
    taken_at = models.DateTimeField(null=True, blank=True)
    camera = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    failure_reason = models.TextField(blank=True)
    thumbnail = models.FileField(upload_to=thumbnail_upload_path, max_length=300, blank=True)
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["album", "sha256"], name="image_unique_album_sha256"),
            models.CheckConstraint(condition=models.Q(status__in=["pending", "indexed", "failed"]), name="image_status_valid"),
            models.CheckConstraint(
                condition=~models.Q(status="failed") | ~models.Q(failure_reason=""), name="image_failed_has_reason"
            ),
        ]
        indexes = [models.Index(fields=["album", "status"]), models.Index(Lower("original_name"), name="image_name_lower")]

    def __str__(self) -> str:
        return self.original_name


class ApiToken(models.Model):
    """A named API token. Only its SHA-256 is stored: the key is shown once, at creation."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=8)  # shown in lists so people can tell tokens apart
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


def mask_upload_path(instance: "ImageMask", filename: str) -> str:
    return f"masks/{instance.image.album_id}/{instance.image.sha256[:2]}/{instance.image.sha256}.png"


class ImageMask(models.Model):
    """A foreground mask an editor uploaded for an image (masked pooling): mode-L PNG, upright, any
    size (resized to the image when used); it wins over the image's own alpha channel. Removing it
    keeps the row with no file, so `updated_at` still tells an indexing chunk that started earlier
    not to write the vector it made with the old mask."""

    image = models.OneToOneField("albums.Image", on_delete=models.CASCADE, related_name="mask")
    file = models.FileField(upload_to=mask_upload_path, max_length=300, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "search_imagemask"  # made by the search app before masks moved to albums

    def __str__(self) -> str:
        return f"mask of #{self.image_id}"
