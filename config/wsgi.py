import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

from config.heap import freeze_long_lived

# A server started without settings gets production's (which refuse placeholder secrets), never
# DEBUG's; `make run` and manage.py choose the local settings themselves.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")
application = get_wsgi_application()
# The URL patterns import every view, serializer and the libraries behind them; loaded now rather
# than on the first request, they are frozen with the rest of what the process keeps.
get_resolver().url_patterns  # noqa: B018 - imported for its side effect
freeze_long_lived()
