"""Named API tokens: create (key shown once), list, revoke, and authenticate `Authorization: Token <key>`
— or, where a view opts in, HTTP Basic with the token as the password."""

from __future__ import annotations

import hashlib
import secrets

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from rest_framework import exceptions
from rest_framework.authentication import BasicAuthentication, TokenAuthentication

from albums.models import ApiToken
from config.throttles import AuthRateThrottle

KEY_PREFIX = "lp_"


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def api_token_create(*, user, name: str) -> tuple[ApiToken, str]:
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(user=user, name=name.strip()[:100] or "token", prefix=key[:8], key_hash=_hash(key))
    return token, key


def api_token_revoke(*, user, token_id: int) -> bool:
    return ApiToken.objects.filter(user=user, pk=token_id).delete()[0] > 0


class ApiTokenAuthentication(TokenAuthentication):
    """Named tokens (`lp_…`); other keys fall through to DRF's own token table."""

    def authenticate_credentials(self, key):
        if not key.startswith(KEY_PREFIX):
            return None
        token = ApiToken.objects.select_related("user").filter(key_hash=_hash(key)).first()
        if token is None or not token.user.is_active:
            raise exceptions.AuthenticationFailed("Invalid or revoked token.")
        now = timezone.now()
        if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)  # at most once a minute
        return (token.user, token)


class ApiTokenBasicAuthentication(BasicAuthentication):
    """HTTP Basic whose password is an API token, for clients that carry nothing but a base URL
    (`http://alice:<token>@host`: the RAG Vision Engine's). Only the views that list it accept it.

    Never the account password: the password is checked exactly as `Authorization: Token <password>`
    would be (a named `lp_…` token, else DRF's token from POST /api/v1/auth/token/), and the user name
    must be the token's owner. Guessing costs what it costs at the token endpoint: an address over
    the `auth` allowance is refused (429) before anything is checked, and every failed credential
    counts against it; a right one does not, so a client's own requests never use it up.
    """

    www_authenticate_realm = "loupe"

    def authenticate_credentials(self, userid, password, request=None):
        throttle = AuthRateThrottle()
        if throttle.exhausted(request):
            raise exceptions.Throttled(wait=throttle.wait())
        try:
            user, token = self._token_owner(password)
            if user.get_username() != userid:
                raise exceptions.AuthenticationFailed("The user name is not the token's owner.")
        except exceptions.AuthenticationFailed as exc:
            throttle.count(request)
            raise exceptions.AuthenticationFailed(
                f"{exc.detail} HTTP Basic takes an API token as its password (create one on /account/tokens/), "
                "never the account password."
            ) from None
        return user, token

    @staticmethod
    def _token_owner(key: str):
        return ApiTokenAuthentication().authenticate_credentials(key) or TokenAuthentication().authenticate_credentials(key)


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """Its own name in the OpenAPI schema: DRF's TokenAuthentication already is `tokenAuth`, and two
    classes under one name made `check --deploy` warn that the schema would be wrong."""

    target_class = ApiTokenAuthentication
    name = "namedTokenAuth"

    def get_security_definition(self, auto_schema):
        return build_bearer_security_scheme_object(header_name="Authorization", token_prefix="Token")


class ApiTokenBasicScheme(OpenApiAuthenticationExtension):
    target_class = ApiTokenBasicAuthentication
    name = "tokenBasicAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "basic", "description": "user name and an API token as the password"}
