"""Rate limits: per user for the expensive endpoints, search (an encoder call and a vector query) and
upload (decoding every file), and per address for password → token exchanges. Rates come from
settings (`LOUPE_AUTH_THROTTLE`, `LOUPE_SEARCH_THROTTLE`, `LOUPE_UPLOAD_THROTTLE`,
`LOUPE_RENDER_THROTTLE`, `LOUPE_BULK_THROTTLE`); counts live in the default cache, which is Redis, so every gunicorn worker
and host shares them.

A throttle that cannot reach its cache lets the request through and logs it: while Redis restarts,
search and upload keep working (health says Redis is down) instead of failing with a 500.
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisError
from rest_framework.permissions import SAFE_METHODS
from rest_framework.settings import api_settings
from rest_framework.throttling import UserRateThrottle

logger = logging.getLogger(__name__)


class _LoupeRateThrottle(UserRateThrottle):
    def get_rate(self):
        # DRF binds the rates dict at import; read it per request so settings overrides apply.
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def allow_request(self, request, view):
        try:
            return super().allow_request(request, view)
        except (RedisError, OSError):
            logger.warning("rate limit for %s not checked: the cache is unreachable", self.scope, exc_info=True)
            return True


class AuthRateThrottle(_LoupeRateThrottle):
    """Password → token exchanges, per client address (no user yet)."""

    scope = "auth"


class SearchRateThrottle(_LoupeRateThrottle):
    scope = "search"


class RenderRateThrottle(_LoupeRateThrottle):
    """Pictures made per request: thumbnails, support-image crops, masks. A grid asks for a page
    of thumbnails at once, so the allowance is larger than search's."""

    scope = "render"


class BulkRateThrottle(_LoupeRateThrottle):
    """Actions on a selection of up to LOUPE_MAX_BULK_IMAGES images: delete, download as a zip
    (every file read and sent), copy to another album (every file stored again)."""

    scope = "bulk"


class UploadRateThrottle(_LoupeRateThrottle):
    """Uploads only; listing an album's images is not limited."""

    scope = "upload"

    def allow_request(self, request, view):
        return request.method in SAFE_METHODS or super().allow_request(request, view)
