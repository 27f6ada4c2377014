"""Torch intra-op threads follow the requests a process serves at once (encoders/threads.py)."""

from __future__ import annotations

import pytest

from encoders import threads


@pytest.fixture(autouse=True)
def fresh(settings):
    import torch

    before = torch.get_num_threads()
    settings.LOUPE_TORCH_THREADS = 0
    threads._reset_for_tests()
    yield
    threads._reset_for_tests()
    torch.set_num_threads(before)


def test_cores_divided_by_concurrency_at_least_one(monkeypatch):
    monkeypatch.setattr(threads, "cores", lambda: 16)
    assert threads.intra_op_threads() is None  # nothing known: torch's default stays
    for concurrency, expected in ((1, 16), (4, 4), (3, 5), (16, 1), (64, 1)):
        threads.note_concurrency(concurrency)
        assert threads.intra_op_threads() == expected
    threads.note_concurrency("auto")  # Celery's sentinel before it resolves: not a count
    assert threads.intra_op_threads() is None


@pytest.mark.parametrize(("cpu_max", "expected"), [("max 100000", 8), ("150000 100000", 1), ("400000 100000", 4),
                                                    ("2000000 100000", 8), ("garbage", 8), (None, 8)])
def test_cores_follow_a_cgroup_cpu_quota(monkeypatch, tmp_path, cpu_max, expected):
    path = tmp_path / "cpu.max"
    if cpu_max is not None:
        path.write_text(cpu_max + "\n")
    monkeypatch.setattr(threads, "CGROUP_CPU_MAX", str(path))
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(8)))
    assert threads.cores() == expected


def test_the_setting_wins(settings, monkeypatch):
    monkeypatch.setattr(threads, "cores", lambda: 16)
    threads.note_concurrency(4)
    settings.LOUPE_TORCH_THREADS = 3
    assert threads.intra_op_threads() == 3


def test_applied_once_to_torch_when_the_first_encoder_loads(monkeypatch, settings, tiny_models_dir):
    import torch

    from encoders import registry
    from encoders.registry import get_encoder
    from tests.tiny_models import OPEN_CLIP_TINY

    monkeypatch.setattr(registry, "_encoders", {})  # a process that has loaded nothing yet
    monkeypatch.setattr(threads, "cores", lambda: 4)
    threads.note_concurrency(4)
    settings.LOUPE_MODELS_DIR = tiny_models_dir
    assert threads.applied() is None
    get_encoder(OPEN_CLIP_TINY, device="cpu")
    assert threads.applied() == 1 and torch.get_num_threads() == 1
    threads.note_concurrency(1)  # later changes do not flip it under running requests
    assert threads.apply_once() == 1 and torch.get_num_threads() == 1


@pytest.mark.slow
@pytest.mark.django_db
def test_a_real_worker_sets_it_from_its_concurrency_and_reports_it(worker, settings, tiny_models_dir):
    """The session's worker runs 2 task threads: once it has encoded a query, its torch uses
    cores ÷ 2 threads, and its heartbeat says so for operators."""
    from encoders.model_ids import parse_model_id
    from encoders.registry import get_encoder
    from search.query_encoding import encode_query
    from tests.conftest import wait_for
    from tests.tiny_models import OPEN_CLIP_TINY
    from workers.heartbeat import live_workers

    settings.LOUPE_MODELS_DIR = tiny_models_dir
    settings.LOUPE_QUERY_ENCODING = "worker"
    model_id = get_encoder(OPEN_CLIP_TINY, device="cpu").model_id
    encoded = encode_query(model=parse_model_id(model_id), texts={"text": "a red square"}, image_bytes=None, ensemble=False)
    assert set(encoded.vectors) == {"text"}
    name = next(n for n, beat in live_workers().items() if "query" in beat["queues"])
    assert live_workers()[name]["concurrency"] == 2
    expected = max(1, threads.cores() // 2)
    wait_for(lambda: live_workers()[name].get("torch_threads") == expected, timeout=30,
             what=f"the worker's heartbeat to report {expected} torch thread(s)")
