"""The search app keeps no tables of its own: vectors belong to indexing (workers/models.py) and
uploaded masks to albums (albums/models.py). Migrations 0001-0005 made those tables here."""

from albums.models import mask_upload_path  # noqa: F401 — migration 0004 names it by this path
