"""Flower, started only behind a real password. Its API can shut workers down and send tasks, so it is
never started open: `python -m config.flower [flower options]` refuses (exit 2, the reason on stderr)
while FLOWER_BASIC_AUTH is empty, malformed or a placeholder, then runs `celery -A config flower`, which
reads FLOWER_BASIC_AUTH from the environment (kept out of the command line that `ps` shows).

docker-compose.yml runs it with the operator's FLOWER_BASIC_AUTH; `make run` (config/launcher.py) with a
password generated once and kept in var/flower-basic-auth (0600).
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from config.placeholders import is_placeholder

MIN_PASSWORD_LENGTH = 12
CREDENTIALS_FILE = "flower-basic-auth"
GENERATED_USER = "admin"


class FlowerAuthError(RuntimeError):
    pass


def basic_auth_problem(value: str | None) -> str | None:
    """Why FLOWER_BASIC_AUTH (`user:password`, several separated by commas) must not guard Flower, or None."""
    if not (value or "").strip():
        return "FLOWER_BASIC_AUTH is empty; set it to user:password (Flower would otherwise be open to anyone)."
    for credential in value.split(","):
        user, colon, password = credential.strip().partition(":")
        if not colon or not user or not password:
            return "FLOWER_BASIC_AUTH must be user:password (several separated by commas)."
        if is_placeholder(password) or is_placeholder(credential):
            return f"FLOWER_BASIC_AUTH for user {user!r} has the example password; choose a real one."
        if len(password) < MIN_PASSWORD_LENGTH:
            return f"FLOWER_BASIC_AUTH's password for user {user!r} is shorter than {MIN_PASSWORD_LENGTH} characters."
    return None


def basic_auth_from_file(var_dir: Path) -> tuple[str, Path]:
    """`make run`'s credentials: generated on first use, kept readable by this user only."""
    path = Path(var_dir) / CREDENTIALS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        os.chmod(path, 0o600)  # a copy restored or edited with wider permissions
        value = path.read_text().strip()
    else:
        value = f"{GENERATED_USER}:{secrets.token_urlsafe(24)}"
        with os.fdopen(fd, "w") as handle:
            handle.write(value + "\n")
    if problem := basic_auth_problem(value):
        raise FlowerAuthError(f"{path}: {problem} Delete the file to have a new password generated.")
    return value, path


def main(argv: list[str]) -> int:
    if problem := basic_auth_problem(os.environ.get("FLOWER_BASIC_AUTH")):
        print(f"Refusing to start Flower: {problem}", file=sys.stderr, flush=True)
        return 2
    command = [sys.executable, "-m", "celery", "-A", "config", "flower", *argv]
    os.execv(sys.executable, command)
    return 0  # not reached: execv replaces this process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
