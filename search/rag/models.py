"""Support sets for few-shot classification: labeled example images cut into patches, each patch
embedded once on a worker and kept in pgvector beside the settings it was made with."""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from pgvector.django import VectorField

from albums.hooks import LabelState

MIN_RESOLUTION, MAX_RESOLUTION = 32, 2048
MIN_PATCH_SIZE = 32  # smaller patches only multiply crops and vectors past what a cell can show


class PatchSource(models.TextChoices):
    # The encoder's own token grid over the whole image, pooled to the patch grid (one forward pass).
    TOKENS = "tokens", "Token grid of the encoder"
    # Each patch cropped and encoded as an image of its own (one forward pass per patch).
    CROPS = "crops", "Each patch encoded as its own image"


class SupportSet(models.Model):
    album = models.ForeignKey("albums.Album", on_delete=models.CASCADE, related_name="support_sets")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    encoder_spec = models.CharField(max_length=300)
    patch_source = models.CharField(max_length=16, choices=PatchSource.choices, default=PatchSource.TOKENS)
    support_resolution = models.PositiveIntegerField(
        default=448, validators=[MinValueValidator(MIN_RESOLUTION), MaxValueValidator(MAX_RESOLUTION)]
    )
    patch_size = models.PositiveIntegerField(
        default=64, validators=[MinValueValidator(MIN_PATCH_SIZE), MaxValueValidator(MAX_RESOLUTION)]
    )
    use_vlm = models.BooleanField(default=True)
    # The RAG Vision Engine's boolean `flag` (a request with flagKey) when no vision-language model
    # answers: true when the decided class has this label, false for any other; blank: null. A label,
    # not a key to a class, so that it outlives an `index == 0` upload, which recreates the classes.
    flag_true_label = models.CharField(
        max_length=100, blank=True, help_text="The class whose decision means flag = true on the RAG Vision compatible API."
    )
    # Bumped by every change of encoder or patch settings; patch writes of an older one are dropped.
    generation = models.PositiveIntegerField(default=1)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["album", "name"], name="supportset_unique_album_name"),
            models.CheckConstraint(
                condition=models.Q(patch_size__lte=models.F("support_resolution")), name="supportset_patch_fits"
            ),
            models.CheckConstraint(condition=models.Q(patch_source__in=PatchSource.values), name="supportset_source_valid"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def settings_key(self) -> str:
        """What a patch row was made with besides the model: rows of another key are stale."""
        return f"{self.patch_source}:{self.support_resolution}/{self.patch_size}"


class SupportClass(models.Model):
    support_set = models.ForeignKey(SupportSet, on_delete=models.CASCADE, related_name="classes")
    label = models.CharField(max_length=100)
    position = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["position", "id"]
        constraints = [models.UniqueConstraint(fields=["support_set", "label"], name="supportclass_unique_label")]

    def __str__(self) -> str:
        return self.label


class SupportImage(models.Model):
    """An album image used as an example of a class. Uploads land in the album first, so every
    support image has the album's validation, storage, thumbnail and membership checks."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    support_class = models.ForeignKey(SupportClass, on_delete=models.CASCADE, related_name="images")
    # Denormalized so "one image, one class per set" is a constraint, not a hope.
    support_set = models.ForeignKey(SupportSet, on_delete=models.CASCADE, related_name="+")
    image = models.ForeignKey("albums.Image", on_delete=models.CASCADE, related_name="support_uses")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    failure_reason = models.TextField(blank=True)
    patch_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["support_set", "image"], name="supportimage_one_class_per_set"),
            models.CheckConstraint(condition=models.Q(status__in=["pending", "ready", "failed"]), name="supportimage_status_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.support_class} #{self.image_id}"


class PatchEmbedding(models.Model):
    support_image = models.ForeignKey(SupportImage, on_delete=models.CASCADE, related_name="patches")
    support_class = models.ForeignKey(SupportClass, on_delete=models.CASCADE, related_name="+", db_index=False)
    # "<encoder model_id>|<settings_key>": a query is only ever compared with patches of its own key.
    model_key = models.CharField(max_length=400)
    row = models.PositiveSmallIntegerField()
    col = models.PositiveSmallIntegerField()
    # The patch's box in the original image's pixels: (x0, y0) inclusive, (x1, y1) exclusive.
    x0 = models.PositiveIntegerField()
    y0 = models.PositiveIntegerField()
    x1 = models.PositiveIntegerField()
    y1 = models.PositiveIntegerField()
    dim = models.PositiveIntegerField()
    vector = VectorField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["support_image", "model_key", "row", "col"], name="patch_unique_cell"),
        ]
        indexes = [models.Index(fields=["support_class", "model_key"], name="patch_class_model")]

    @property
    def box(self) -> list[int]:
        return [self.x0, self.y0, self.x1, self.y1]


class Label(models.Model):
    """A support set's answer for one album image, written by a labeling job (search/rag/labeling.py)
    and then reviewed: `predicted` until an editor accepts it, corrects its class or rejects it."""

    State = LabelState  # albums shows and filters labels by these states too

    class Source(models.TextChoices):
        RETRIEVAL = "retrieval", "Retrieval"
        MODEL = "model", "Vision-language model"

    REVIEWED_STATES = (State.ACCEPTED, State.CORRECTED, State.REJECTED)

    image = models.ForeignKey("albums.Image", on_delete=models.CASCADE, related_name="rag_labels")
    support_set = models.ForeignKey(SupportSet, on_delete=models.CASCADE, related_name="labels")
    # The class now (the prediction, or the correction). A label, not only a key, so that export and
    # review still read it after the class is deleted or an `index == 0` upload recreates the classes.
    support_class = models.ForeignKey(SupportClass, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    label = models.CharField(max_length=100)
    predicted_label = models.CharField(max_length=100)  # what the job decided, kept through a correction
    scores = models.JSONField(default=dict)  # class label → normalized score (they sum to 1)
    margin = models.FloatField()  # top score minus the second (1 with a single class)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.RETRIEVAL)
    explanation = models.TextField(blank=True)
    # Per class, the support patch that best matched a foreground query patch (the review page's crops).
    evidence = models.JSONField(default=list, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PREDICTED)
    job = models.ForeignKey("workers.IndexJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    reviewed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["margin", "id"]
        constraints = [
            models.UniqueConstraint(fields=["image", "support_set"], name="label_unique_image_set"),
            models.CheckConstraint(condition=models.Q(state__in=["predicted", "accepted", "corrected", "rejected"]),
                                   name="label_state_valid"),
            models.CheckConstraint(condition=models.Q(source__in=["retrieval", "model"]), name="label_source_valid"),
        ]
        indexes = [models.Index(fields=["support_set", "margin"], name="label_set_margin"),
                   models.Index(fields=["support_set", "label"], name="label_set_label")]

    def __str__(self) -> str:
        return f"{self.label} #{self.image_id} ({self.state})"
