import atexit
import os
import uuid

from config import runtime

from .base import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Tests run the image towers in float32 wherever CI lands, so byte-level assertions do not depend on
# the CPU; tests/encoders/test_precision.py runs bf16 on purpose.
LOUPE_CPU_BF16 = env.str("LOUPE_CPU_BF16", default="false")  # noqa: F405
TEST_VAR_DIR = VAR_DIR / "test"  # noqa: F405 — apart from `make run`'s data, so both can run at once
MEDIA_ROOT = Path(env.str("LOUPE_MEDIA_ROOT", default=str(TEST_VAR_DIR / "media")))  # noqa: F405
STATIC_ROOT = TEST_VAR_DIR / "static"
# Tests never reach for a hub unless one opts in (tests/workers/test_model_fetch.py serves one on loopback).
LOUPE_ALLOW_DOWNLOADS = downloads_setting(env.str("LOUPE_ALLOW_DOWNLOADS", default="false"))  # noqa: F405
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
REST_FRAMEWORK = {  # noqa: F405
    **REST_FRAMEWORK,  # noqa: F405
    "DEFAULT_THROTTLE_RATES": {"auth": "1000/minute", "search": "100000/minute", "upload": "100000/minute",
                                "render": "100000/minute", "bulk": "100000/minute"},
}

# With no URLs given, the test run starts its own embedded servers and stops them when it ends.
# Processes the tests spawn (Celery workers, the launcher) receive explicit URLs instead.
if not env.str("DATABASE_URL", default=""):  # noqa: F405
    _owns_postgres = not runtime.postgres_running(TEST_VAR_DIR)
    _postgres = runtime.start_postgres(TEST_VAR_DIR)
    if _owns_postgres:
        atexit.register(_postgres.stop)
    DATABASE_URL = _postgres.url
    DATABASES["default"].update(environ.Env.db_url_config(DATABASE_URL))  # noqa: F405
if not env.str("REDIS_URL", default=""):  # noqa: F405
    _redis = runtime.start_redis(TEST_VAR_DIR)
    atexit.register(_redis.stop)
    REDIS_URL = _redis.url
    CACHES["default"]["LOCATION"] = REDIS_URL  # noqa: F405
    CELERY_BROKER_URL = runtime.redis_broker_url(REDIS_URL)
    CELERY_RESULT_BACKEND = CELERY_BROKER_URL

# Each test run caches and counts under a prefix of its own: Redis outlives a run (append-only file)
# while ids restart with every new test database, so a mark or a count an earlier run left behind
# would otherwise be read as this run's. Processes the run spawns inherit the prefix (os.environ).
os.environ.setdefault("LOUPE_TEST_RUN", uuid.uuid4().hex[:12])
CACHES["default"]["KEY_PREFIX"] = f"test-{os.environ['LOUPE_TEST_RUN']}"  # noqa: F405
