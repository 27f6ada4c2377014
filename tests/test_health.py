import pytest

pytestmark = pytest.mark.django_db


def test_health_reports_each_component(client_for, settings, monkeypatch):
    from config import health

    monkeypatch.setattr(health, "_workers", lambda: {"workers": ["w@test"]})
    response = client_for(None).get("/api/v1/health/")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "ok" and body["down"] == []
    assert body["components"]["database"]["pgvector"].startswith("0.8")
    assert body["components"]["database"]["postgres"].startswith("18")
    assert body["components"]["redis"]["ok"] is True
    assert body["components"]["workers"]["workers"] == ["w@test"]


def test_health_is_degraded_and_names_the_part_that_is_down(client_for, settings, tmp_path):
    settings.REDIS_URL = f"unix://{tmp_path}/nothing-here.sock"
    response = client_for(None).get("/api/v1/health/")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert set(body["down"]) == {"redis", "workers"}
    assert body["components"]["database"]["ok"] is True
    assert "nothing-here.sock" in body["components"]["redis"]["error"] or body["components"]["redis"]["error"]


@pytest.mark.slow
def test_health_sees_a_real_worker(worker, client_for):
    body = client_for(None).get("/api/v1/health/").json()
    assert body["components"]["workers"]["ok"] is True
    assert body["components"]["workers"]["workers"]
