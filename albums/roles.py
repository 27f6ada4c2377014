from django.db import models


class Role(models.TextChoices):
    VIEWER = "viewer", "Viewer"
    EDITOR = "editor", "Editor"
    OWNER = "owner", "Owner"


_RANK = {Role.VIEWER: 1, Role.EDITOR: 2, Role.OWNER: 3}


def role_at_least(role: str, minimum: str) -> bool:
    """Owners can do what editors can, editors what viewers can."""
    return _RANK[Role(role)] >= _RANK[Role(minimum)]
