from django.core.exceptions import ImproperlyConfigured

from config.placeholders import is_placeholder

from .base import *  # noqa: F403

SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")  # noqa: F405
if not SECRET_KEY:
    raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set in production.")
if is_placeholder(SECRET_KEY):
    # Anyone who read .env.example could sign sessions, password-reset links and CSRF tokens with it.
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY is a placeholder (the example value from .env.example or the docs). Set a long random "
        "value, e.g. the output of: python3 -c 'import secrets; print(secrets.token_urlsafe(50))'"
    )
DEBUG = False
SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=True)  # noqa: F405
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# HTTPS only, as the secure cookies already assume, and a year of HSTS (what browsers' preload list and
# `check --deploy` expect; a shorter trial period is DJANGO_SECURE_HSTS_SECONDS). A plain-HTTP install
# (a LAN without TLS) turns all three off with DJANGO_SECURE_COOKIES=false.
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=SESSION_COOKIE_SECURE)  # noqa: F405
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=31_536_000 if SESSION_COOKIE_SECURE else 0)  # noqa: F405
SECURE_REDIRECT_EXEMPT = [r"^api/v1/health/(web/)?$"]  # load balancers probe health over plain HTTP
# Subdomains and the browsers' preload list are decisions about the whole domain, not about Loupe:
# off unless the operator opts in, and their deploy-check warnings silenced for that reason.
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)  # noqa: F405
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=False)  # noqa: F405
SILENCED_SYSTEM_CHECKS = ["security.W005", "security.W021"]
