"""config/cpu_slots.py: searches of one web process run a few at a time, the rest in arrival order;
a search waiting on the query worker gives its slot to the next."""

from __future__ import annotations

import threading
import time

from config.cpu_slots import FifoSlots, search_slots, slot_released


def _start(target, *args) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def _wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_waiters_get_their_slot_in_arrival_order():
    slots = FifoSlots(1)
    slots.acquire()
    order: list[int] = []

    def search(number: int) -> None:
        with slots.held():
            order.append(number)

    threads = []
    for number in range(8):
        threads.append(_start(search, number))
        _wait_until(lambda n=number: slots.queued == n + 1)  # each queued before the next arrives
    slots.release()
    for thread in threads:
        thread.join(5)
    assert order == list(range(8))


def test_at_most_size_run_at_once_and_every_slot_comes_back():
    slots = FifoSlots(3)
    running, peak, lock = [0], [0], threading.Lock()

    def search() -> None:
        with slots.held():
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            time.sleep(0.005)
            with lock:
                running[0] -= 1

    threads = [_start(search) for _ in range(24)]
    for thread in threads:
        thread.join(10)
    assert peak[0] == 3
    assert slots.queued == 0 and slots.running == 0
    for _ in range(3):  # all three free again: none blocks
        slots.acquire()
    assert slots.queued == 0


def test_a_waiting_search_lends_its_slot_and_queues_again_after():
    slots = FifoSlots(1)
    lent, resumed = threading.Event(), threading.Event()
    other_ran = []

    def text_search() -> None:
        with slots.held():
            with slots.released():
                lent.set()
                _wait_until(lambda: other_ran)  # the query worker's answer arrives meanwhile
            resumed.set()

    first = _start(text_search)
    assert lent.wait(5)
    with slots.held():  # the next search runs while the first one waits
        other_ran.append(True)
    first.join(5)
    assert resumed.is_set() and slots.queued == 0


def test_released_outside_a_slot_changes_nothing(settings):
    settings.LOUPE_WEB_SEARCH_SLOTS = 2
    slots = search_slots()
    with slot_released():  # a query encoded by a caller that holds no slot (a worker, a test)
        assert slots.holding() == 0
    settings.LOUPE_WEB_SEARCH_SLOTS = 0
    assert search_slots() is None
    with slot_released():
        pass


def test_search_endpoints_run_in_a_slot(settings, alice, client_for, monkeypatch):
    """The search view holds a slot while it runs; a query image upload (a large body) does not."""
    from albums import services as album_services
    from config import cpu_slots
    from config.request_limits import QUERY_IMAGE_MIN_BODY_BYTES
    from search.api import views

    settings.LOUPE_WEB_SEARCH_SLOTS = 2
    album = album_services.album_create(owner=alice, name="slots")
    seen = []
    real = views.album_get_for_user

    def spy(**kwargs):
        seen.append(cpu_slots.search_slots().holding())
        return real(**kwargs)

    monkeypatch.setattr(views, "album_get_for_user", spy)
    client = client_for(alice)
    client.post(f"/api/v1/albums/{album.pk}/search/", {"text": "x"}, format="json")
    client.post(f"/api/v1/albums/{album.pk}/search/", {"image_base64": "A" * (QUERY_IMAGE_MIN_BODY_BYTES + 10)},
                format="json")
    assert seen == [1, 0]
    assert cpu_slots.search_slots().queued == 0 and cpu_slots.search_slots().running == 0


def test_a_search_back_from_the_query_worker_goes_ahead_of_new_ones():
    slots = FifoSlots(1)
    order: list[str] = []
    answered = threading.Event()

    def text_search() -> None:
        with slots.held():
            with slots.released():
                answered.wait(5)
            order.append("text, after its encode")

    def new_search(name: str) -> None:
        with slots.held():
            order.append(name)

    slots.acquire()  # a search is running
    text = _start(text_search)
    _wait_until(lambda: slots.queued == 1)
    slots.release()  # the text search starts, then waits on the worker and lends its slot
    _wait_until(lambda: slots.running == 0 and text.is_alive())
    slots.acquire()  # another search takes the lent slot
    newcomers = [_start(new_search, f"new {n}") for n in range(2)]
    _wait_until(lambda: slots.queued == 2)
    answered.set()
    _wait_until(lambda: slots.queued == 3)
    slots.release()
    for thread in (text, *newcomers):
        thread.join(5)
    assert order == ["text, after its encode", "new 0", "new 1"]
