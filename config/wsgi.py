import os

from django.core.wsgi import get_wsgi_application

# A server started without settings gets production's (which refuse placeholder secrets), never
# DEBUG's; `make run` and manage.py choose the local settings themselves.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")
application = get_wsgi_application()
