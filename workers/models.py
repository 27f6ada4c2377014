from django.conf import settings
from django.db import models
from django.utils import timezone
from pgvector.django import HalfVectorField, VectorField


class IndexJob(models.Model):
    """Progress of background work on an album: what progress bars, the jobs page and the API read.
    A model fetch (workers/fetching.py) is the one kind without an album: its `model_id` is the spec
    whose weights it downloads, `done`/`total` count bytes, and only staff see it on the jobs page."""

    class Kind(models.TextChoices):
        INDEX = "index", "Index"
        REBUILD = "rebuild", "Rebuild"
        IMPORT = "import", "Folder import"
        DUPLICATES = "duplicates", "Near-duplicates"
        LABEL = "label", "Labeling"  # a support set classifies album images (search/rag/labeling.py)
        FETCH = "fetch", "Model download"  # an encoder's weights from the hub (workers/fetching.py)
        MAP = "map", "Semantic map"  # 2-D layout and clusters of the album's vectors (workers/maps.py)

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    ACTIVE_STATUSES = (Status.QUEUED, Status.RUNNING)

    album = models.ForeignKey("albums.Album", on_delete=models.CASCADE, related_name="jobs", null=True, blank=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    generation = models.PositiveIntegerField(default=1)
    model_id = models.CharField(max_length=300, blank=True)
    total = models.PositiveBigIntegerField(default=0)  # bytes for a model fetch: checkpoints pass 2 GiB
    done = models.PositiveBigIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    message = models.TextField(blank=True)
    celery_task_id = models.CharField(max_length=64, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    params = models.JSONField(default=dict, blank=True)  # what the job was asked (a duplicates threshold)
    result = models.JSONField(null=True, blank=True)  # what it found, for jobs that answer a question
    # A failed rebuild shows on its album (the album keeps searching the old vectors) until someone
    # dismisses it (workers.indexing.rebuild_failure_dismiss).
    dismissed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # One active indexing job per album: a second request joins it (see workers.indexing).
            # Imports run beside it: the images they add join or follow the indexing job.
            models.UniqueConstraint(
                fields=["album"],
                condition=models.Q(status__in=["queued", "running"], kind__in=["index", "rebuild"]),
                name="job_one_active_index_per_album",
            ),
            # One download per model: a second request gets the one under way (workers.fetching).
            models.UniqueConstraint(
                fields=["model_id"],
                condition=models.Q(status__in=["queued", "running"], kind="fetch"),
                name="job_one_active_fetch_per_model",
            ),
            models.CheckConstraint(condition=models.Q(album__isnull=False) | models.Q(kind="fetch"),
                                   name="job_album_unless_fetch"),
            # One map job per album at a time: a fit and a placement never write the same points at once.
            models.UniqueConstraint(
                fields=["album"], condition=models.Q(status__in=["queued", "running"], kind="map"),
                name="job_one_active_map_per_album",
            ),
            models.CheckConstraint(condition=models.Q(done__lte=models.F("total")), name="job_done_within_total"),
            models.CheckConstraint(condition=models.Q(failed__lte=models.F("done")), name="job_failed_within_done"),
        ]
        indexes = [models.Index(fields=["album", "status"])]

    def __str__(self) -> str:
        return f"{self.kind} job #{self.pk} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE_STATUSES

    @property
    def is_stale(self) -> bool:
        """Active, but no sign of life (heartbeat, start, creation) for LOUPE_JOB_STALE_SECONDS."""
        if not self.is_active:
            return False
        last_sign_of_life = self.heartbeat_at or self.started_at or self.created_at
        return (timezone.now() - last_sign_of_life).total_seconds() > settings.LOUPE_JOB_STALE_SECONDS

    @property
    def rate(self) -> float | None:
        """Images per second since the job started."""
        if not self.started_at or not self.done:
            return None
        end = self.finished_at or self.heartbeat_at
        seconds = (end - self.started_at).total_seconds() if end else 0
        return self.done / seconds if seconds > 0 else None

    @property
    def eta_seconds(self) -> float | None:
        rate = self.rate
        if self.status != self.Status.RUNNING or not rate:
            return None
        return (self.total - self.done) / rate

    @property
    def progress(self) -> float:
        return self.done / self.total if self.total else (1.0 if self.status == self.Status.SUCCEEDED else 0.0)


class IndexJobBatch(models.Model):
    """A batch of a job that has been written. Its row is inserted in the same transaction as the
    batch's vectors and counters, so a batch redelivered after a worker died counts once."""

    job = models.ForeignKey(IndexJob, on_delete=models.CASCADE, related_name="batches")
    seq = models.PositiveIntegerField()
    images = models.PositiveIntegerField()
    failed = models.PositiveIntegerField(default=0)
    seconds = models.FloatField(default=0)
    written_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "seq"], name="job_batch_unique_seq")]


# --- The vectors: what indexing writes and search reads -------------------------------------------


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
        db_table = "search_embedding"  # made by the search app before vectors moved to indexing

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
        db_table = "search_regionembedding"

    def __str__(self) -> str:
        return f"{self.model_id} #{self.image_id} cell {self.cell}"


class ImageConcepts(models.Model):
    """An image's ImageNet class probabilities under one model (encoders with a classifier head:
    EfficientNet-Lite0), written beside its vector by the same forward pass. A word query scores the
    probability mass on the classes its words name (encoders/concepts.py) as one inner product in
    PostgreSQL. halfvec(1000): 2 KB a row, exact for any set of classes, where top-k would drop the
    tail that broad words ("food": 48 classes, "dog": 118) add up."""

    image = models.ForeignKey("albums.Image", on_delete=models.CASCADE, related_name="+")
    album = models.ForeignKey("albums.Album", on_delete=models.CASCADE, related_name="+", db_index=False)
    model_id = models.CharField(max_length=300)
    probabilities = HalfVectorField(dimensions=1000)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["image", "model_id"], name="concepts_unique_image_model")]
        indexes = [models.Index(fields=["album", "model_id"], name="concepts_album_model")]

    def __str__(self) -> str:
        return f"{self.model_id} concepts #{self.image_id}"


# --- The semantic map: the album's vectors laid out in 2-D (workers/maps.py) ----------------------


class AlbumMap(models.Model):
    """One album's map under one model: when it was fitted and how the layout was made. No fitted
    reducer is stored: its bulk is a copy of the vectors PostgreSQL already holds (measured in
    docs/benchmarks.md), so placing new images reads the fitted points and their vectors instead
    (workers/map_layout.py: place), and nothing is ever unpickled."""

    album = models.ForeignKey("albums.Album", on_delete=models.CASCADE, related_name="+")
    model_id = models.CharField(max_length=300)
    fitted_at = models.DateTimeField()
    fitted_count = models.PositiveIntegerField()  # images in the last full fit
    placed_count = models.PositiveIntegerField(default=0)  # placed since, without a refit
    updated_at = models.DateTimeField()  # any change to its points: the API's ETag and Last-Modified
    # UMAP's parameters and curve (a, b), and how the fit was scaled into [-1, 1]^2, for placement.
    params = models.JSONField(default=dict)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["album", "model_id"], name="map_unique_album_model")]

    def __str__(self) -> str:
        return f"map of album {self.album_id} ({self.model_id})"


class MapPoint(models.Model):
    """An image on its album's map: x, y in [-1, 1], its cluster (-1: noise). `placed`: added after
    the fit by placement against the fitted points, not part of the fit itself."""

    image = models.ForeignKey("albums.Image", on_delete=models.CASCADE, related_name="+")
    album = models.ForeignKey("albums.Album", on_delete=models.CASCADE, related_name="+", db_index=False)
    model_id = models.CharField(max_length=300)
    x = models.FloatField()
    y = models.FloatField()
    cluster = models.IntegerField(default=-1)
    placed = models.BooleanField(default=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["image", "model_id"], name="map_point_unique_image_model")]
        indexes = [models.Index(fields=["album", "model_id"], name="map_point_album_model")]

    def __str__(self) -> str:
        return f"#{self.image_id} at ({self.x:.3f}, {self.y:.3f})"


class MapCluster(models.Model):
    """A cluster of a map: its name and terms (text encoders: the vocabulary's best matches;
    EfficientNet-Lite0: its dominant ImageNet concepts; else empty), size, the images nearest its
    mean vector, and its centre on the map."""

    album = models.ForeignKey("albums.Album", on_delete=models.CASCADE, related_name="+", db_index=False)
    model_id = models.CharField(max_length=300)
    cluster = models.IntegerField()
    name = models.CharField(max_length=200, blank=True)
    terms = models.JSONField(default=list, blank=True)
    size = models.PositiveIntegerField()
    medoid_image_ids = models.JSONField(default=list, blank=True)
    x = models.FloatField()
    y = models.FloatField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["album", "model_id", "cluster"], name="map_cluster_unique")]
        ordering = ["cluster"]

    def __str__(self) -> str:
        return f"cluster {self.cluster} of album {self.album_id}: {self.name or '-'}"
