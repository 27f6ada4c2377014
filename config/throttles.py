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
    """Credential checks, per client address: password → token exchanges and sign-ins count every
    attempt; HTTP Basic with a token (albums/tokens.py) is refused while the address is over the
    allowance and counts its failures. Keyed on the address alone, also for a signed-in caller, so it
    can run while DRF is still authenticating (reading request.user there would recurse)."""

    scope = "auth"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def exhausted(self, request) -> bool:
        """Whether the address has used its allowance, without counting this request."""
        self._counting = False
        try:
            return not self.allow_request(request, None)
        finally:
            self._counting = True

    def count(self, request) -> None:
        """Count one attempt (a failed credential)."""
        self.allow_request(request, None)

    def throttle_success(self):
        if getattr(self, "_counting", True):
            return super().throttle_success()
        return True


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
