"""config/flower.py: Flower starts only behind a real password, in compose and under `make run`."""

import os
import stat

import pytest

from config import flower
from config.launcher import Launcher


@pytest.mark.parametrize("value", [
    "", "   ", "admin", "admin:", ":a-long-password-1", "admin:change-me", "admin:CHANGE-ME-please-123",
    "admin:short-pw", "admin:a-real-password-9,ops:change-me",
])
def test_empty_malformed_placeholder_and_short_passwords_are_refused(value):
    assert flower.basic_auth_problem(value)


def test_a_real_password_passes():
    assert flower.basic_auth_problem("admin:Vb3s-q9yT0wPz1") is None
    assert flower.basic_auth_problem("admin:Vb3s-q9yT0wPz1,ops:k2Lr8sQm-Xw4aa") is None


def test_the_entrypoint_refuses_before_starting_anything(monkeypatch, capsys):
    started = []
    monkeypatch.setattr(os, "execv", lambda *args: started.append(args))
    monkeypatch.setenv("FLOWER_BASIC_AUTH", "admin:change-me")
    assert flower.main(["--port=5555"]) == 2
    assert started == [] and "Refusing to start Flower" in capsys.readouterr().err

    monkeypatch.setenv("FLOWER_BASIC_AUTH", "admin:Vb3s-q9yT0wPz1")
    flower.main(["--port=5555"])
    [(_, argv)] = started
    assert argv[-3:] == ["config", "flower", "--port=5555"] and "Vb3s-q9yT0wPz1" not in " ".join(argv)


def _launcher(monkeypatch, tmp_path, **env):
    monkeypatch.delenv("FLOWER_BASIC_AUTH", raising=False)
    monkeypatch.setenv("LOUPE_VAR_DIR", str(tmp_path / "var"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    launcher = Launcher()
    spawned = {}
    launcher.spawn = lambda name, argv, *, env=None: spawned.__setitem__(name, (argv, env or {}))
    return launcher, spawned


def test_make_run_starts_flower_with_a_generated_password_kept_0600_under_var(monkeypatch, tmp_path):
    launcher, spawned = _launcher(monkeypatch, tmp_path)
    launcher.start_children()
    argv, env = spawned["flower"]
    secret_file = tmp_path / "var" / "flower-basic-auth"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert env["FLOWER_BASIC_AUTH"] == secret_file.read_text().strip()
    assert flower.basic_auth_problem(env["FLOWER_BASIC_AUTH"]) is None
    assert "--address=127.0.0.1" in argv and not any(env["FLOWER_BASIC_AUTH"] in part for part in argv)
    assert str(secret_file) in launcher.flower_credentials_note

    # The next start keeps the password (bookmarks and password managers keep working), and tightens the file.
    os.chmod(secret_file, 0o644)
    again, spawned_again = _launcher(monkeypatch, tmp_path)
    again.start_children()
    assert spawned_again["flower"][1]["FLOWER_BASIC_AUTH"] == env["FLOWER_BASIC_AUTH"]
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600


def test_make_run_refuses_a_placeholder_flower_password_before_starting_anything(monkeypatch, tmp_path, capsys):
    launcher, spawned = _launcher(monkeypatch, tmp_path, FLOWER_BASIC_AUTH="admin:change-me")
    monkeypatch.setattr(launcher, "start_backing_services", lambda: pytest.fail("started the database"))
    assert launcher.run() == 1
    assert spawned == {} and "refusing to start Flower" in capsys.readouterr().out


def test_make_run_uses_the_operators_flower_password(monkeypatch, tmp_path):
    launcher, spawned = _launcher(monkeypatch, tmp_path, FLOWER_BASIC_AUTH="ops:Vb3s-q9yT0wPz1")
    launcher.start_children()
    assert spawned["flower"][1]["FLOWER_BASIC_AUTH"] == "ops:Vb3s-q9yT0wPz1"
    assert not (tmp_path / "var" / "flower-basic-auth").exists()
