from django.db import models
from pgvector.django import VectorField


class Embedding(models.Model):
    """One vector per (image, model_id). The column has no fixed dimension: albums use different
    encoders, so HNSW indexes are per (model_id, dim) expression + partial indexes."""

    image = models.ForeignKey("albums.Image", on_delete=models.CASCADE, related_name="embeddings")
    # Denormalized from the image (images never change album): search filters on (album, model)
    # inside the HNSW scan itself, with no join for the iterative scan to wade through.
    album = models.ForeignKey("albums.Album", on_delete=models.CASCADE, related_name="+", db_index=False)
    model_id = models.CharField(max_length=300)
    dim = models.PositiveIntegerField()
    vector = VectorField()
    # Why masked pooling used the global mean for this image (no alpha, empty mask); "" otherwise.
    pooling_note = models.CharField(max_length=200, blank=True, default="", db_default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["image", "model_id"], name="embedding_unique_image_model"),
            models.CheckConstraint(condition=models.Q(dim__gt=0), name="embedding_dim_positive"),
        ]
        indexes = [models.Index(fields=["album", "model_id"], name="embedding_album_model")]

    def __str__(self) -> str:
        return f"{self.model_id} #{self.image_id}"


class RegionEmbedding(models.Model):
    """One pooled region token of an image (`regions` pooling): cell `cell` of the album's
    rows × cols grid, row-major. Written in the same transaction as the image's Embedding and gone
    with the image; box queries rank images by their best-matching region (max-sim)."""

    image = models.ForeignKey("albums.Image", on_delete=models.CASCADE, related_name="region_embeddings")
    album = models.ForeignKey("albums.Album", on_delete=models.CASCADE, related_name="+", db_index=False)
    model_id = models.CharField(max_length=300)
    cell = models.PositiveSmallIntegerField()
    vector = VectorField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["image", "model_id", "cell"], name="region_unique_image_model_cell"),
        ]
        indexes = [models.Index(fields=["album", "model_id"], name="region_album_model")]

    def __str__(self) -> str:
        return f"{self.model_id} #{self.image_id} cell {self.cell}"


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

    def __str__(self) -> str:
        return f"mask of #{self.image_id}"
