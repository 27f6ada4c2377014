"""Docker cannot run here, so the compose file is checked by reading it as compose would."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def load():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_images_and_healthchecks():
    services = load()["services"]
    assert {"db", "redis", "web", "worker", "flower"} <= set(services)
    assert services["db"]["image"].startswith("pgvector/pgvector:") and "pg18" in services["db"]["image"]
    assert services["redis"]["image"].startswith("redis:")
    for name in ("db", "redis", "web", "worker", "flower"):
        test = services[name]["healthcheck"]["test"]
        assert test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, name


def test_app_services_share_env_and_wait_for_healthy_backends():
    services = load()["services"]
    for name in ("web", "worker", "worker-query", "worker-default", "flower", "migrate"):
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgres://") and "@db:5432/" in env["DATABASE_URL"]
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        assert env["DJANGO_SETTINGS_MODULE"] == "config.settings.production"
        assert services[name]["env_file"] == ".env"
    assert services["migrate"]["depends_on"]["db"]["condition"] == "service_healthy"
    assert services["web"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_worker_reserves_a_gpu_and_consumes_the_encode_queue():
    worker = load()["services"]["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert worker["command"][-2:] == ["worker", "encode"]
    assert load()["services"]["worker-default"]["command"][-2:] == ["worker", "default"]


def test_env_example_names_every_variable_compose_interpolates():
    import re

    text = (ROOT / "docker-compose.yml").read_text()
    needed = set(re.findall(r"\$\{([A-Z_]+)", text))
    example = {line.split("=", 1)[0] for line in (ROOT / ".env.example").read_text().splitlines() if "=" in line and not line.startswith("#")}
    assert needed <= example
    assert "DJANGO_SECRET_KEY" in example


def test_dockerfile_installs_requirements_and_runs_gunicorn():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install -r requirements.txt" in dockerfile
    assert 'CMD ["python", "-m", "config.processes", "web", "--bind", "0.0.0.0:8000"]' in dockerfile
    assert "DJANGO_SETTINGS_MODULE=config.settings.production" in dockerfile


def test_production_settings_refuse_to_start_without_a_secret():
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "config.settings.production",
             "DATABASE_URL": "postgres://x@localhost/x", "REDIS_URL": "redis://localhost:6379/0"},
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr


def test_a_worker_consumes_the_query_queue_and_the_web_sends_queries_there():
    """Classification with a vision-language model always runs on the `query` queue: someone must consume it.
    The web sends its query encoding there too, rather than load the model in every gunicorn process."""
    from config.processes import WORKERS

    services = load()["services"]
    assert services["worker-query"]["command"][-2:] == ["worker", "query"]
    assert WORKERS["query"].queue == "query" and WORKERS["query"].pool == "threads"
    assert services["web"]["environment"]["LOUPE_QUERY_ENCODING"] == "worker"
    assert "LOUPE_QUERY_ENCODING" not in services["worker-query"]["environment"]  # it encodes, it does not forward


def _interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's `${NAME:-default}` and `${NAME}`, enough for the files here."""
    import re

    return re.sub(r"\$\{([A-Z_]+)(?::-([^}]*))?\}", lambda m: env.get(m.group(1)) or (m.group(2) or ""), value)


def test_flower_is_published_on_loopback_unless_the_operator_opts_in():
    ports = load()["services"]["flower"]["ports"]
    assert [_interpolate(p, {}) for p in ports] == ["127.0.0.1:5555:5555"]
    example = dict(line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines()
                   if "=" in line and not line.startswith("#"))
    assert [_interpolate(p, example) for p in ports] == ["127.0.0.1:5555:5555"]
    assert [_interpolate(p, {"LOUPE_FLOWER_BIND": "0.0.0.0"}) for p in ports] == ["0.0.0.0:5555:5555"]
    # No other service publishes a port on every interface but the web.
    for name, service in load()["services"].items():
        for port in service.get("ports", []):
            assert name == "web" or _interpolate(port, {}).startswith("127.0.0.1:"), (name, port)


def test_flower_starts_through_the_password_check_and_not_with_the_example_password():
    import os
    import subprocess
    import sys

    command = load()["services"]["flower"]["command"]
    assert command[:3] == ["python", "-m", "config.flower"]
    assert not any("basic-auth" in part or "FLOWER_BASIC_AUTH" in part for part in command)  # not in `ps`
    example = dict(line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines()
                   if "=" in line and not line.startswith("#"))
    for shipped in (example.get("FLOWER_BASIC_AUTH", ""), "admin:change-me"):  # today's, and the one shipped before
        result = subprocess.run([sys.executable, *command[1:]], cwd=ROOT, capture_output=True, text=True, timeout=60,
                                env={**os.environ, "FLOWER_BASIC_AUTH": shipped})
        assert result.returncode == 2, result
        assert "Refusing to start Flower" in result.stderr


def test_the_web_trusts_one_proxy_hop_and_make_run_none():
    """Behind compose's HTTPS proxy the throttles key by the address the proxy appended; `make run`
    serves clients directly, so no X-Forwarded-For entry is believed there (config/settings/base.py)."""
    from django.conf import settings

    web = load()["services"]["web"]["environment"]
    assert _interpolate(web["LOUPE_TRUSTED_PROXIES"], {}) == "1"
    assert "LOUPE_TRUSTED_PROXIES" not in (ROOT / "config" / "launcher.py").read_text()
    assert settings.REST_FRAMEWORK["NUM_PROXIES"] == 0


def test_compose_and_make_run_start_the_same_processes():
    """One table (config/processes.py): compose names its processes, the launcher spawns them from it,
    and each worker's heartbeat name is its queue's, as the health checks read."""
    from config import launcher, processes

    services = load()["services"]
    started = {}
    for name, service in services.items():
        command = service.get("command", [])
        if command[:3] == ["python", "-m", "config.processes"]:
            started[command[4] if command[3] == "worker" else command[3]] = name
            assert command[3] == "worker" and command[4] in processes.WORKERS, (name, command)
            assert f"{command[4]}@$$HOSTNAME" in " ".join(service["healthcheck"]["test"])
        assert "celery" not in command and "gunicorn" not in command, f"{name} starts a process outside the table"
    assert set(started) == set(processes.WORKERS)
    source = (ROOT / "config" / "launcher.py").read_text()
    assert all(f'processes.WORKERS["{name}"]' in source for name in processes.WORKERS)
    assert "processes.web_argv(" in source and '"gunicorn"' not in source and '"celery"' not in source
    assert launcher.processes is processes


def test_the_process_table_builds_the_commands():
    from config.processes import WORKERS, web_argv

    argv = WORKERS["default"].argv({"LOUPE_DEFAULT_CONCURRENCY": "6"})
    assert argv[argv.index("-Q") + 1] == "default" and argv[argv.index("-c") + 1] == "6"
    assert argv[argv.index("-n") + 1] == "default@%h" and argv[argv.index("-P") + 1] == "prefork"
    assert WORKERS["encode"].argv({})[-8:] == ["-P", "threads", "-c", "1", "-n", "encode@%h", "--loglevel", "INFO"]
    web = web_argv("0.0.0.0:8000", {"LOUPE_WEB_WORKERS": "4"})
    assert web[web.index("--workers") + 1] == "4" and web[web.index("--threads") + 1] == "32"

