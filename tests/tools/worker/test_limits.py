"""tools.worker.limits: strict JSON, the memory estimate and the budget the running requests share."""

from __future__ import annotations

import threading
import time

import pytest

from tools.worker.limits import (MAX_DEPTH, MemoryBudget, Refusal, check_estimate, estimate_bytes, parse_json)


@pytest.mark.parametrize("body,words", [
    (b'{"a": NaN}', "NaN"), (b'{"a": [Infinity]}', "Infinity"), (b'{"a": -Infinity}', "-Infinity"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"a": ' * (MAX_DEPTH + 1) + b"1" + b"}" * (MAX_DEPTH + 1), "nested too deeply"),
    (b"[1]", "JSON object"), (b"\xff", "not valid JSON"), (b"", "not valid JSON"),
])
def test_parse_json_refuses_what_json_does_not_allow(body, words):
    with pytest.raises(Refusal) as info:
        parse_json(body)
    assert info.value.status == 400 and words in info.value.detail


def test_parse_json_keeps_ordinary_bodies():
    nested = b'{"a": ' * (MAX_DEPTH - 1) + b"1.5e3" + b"}" * (MAX_DEPTH - 1)
    assert parse_json(nested) and parse_json(b'{"x": [1, 2.5, "s", null, true]}')["x"][1] == 2.5


def test_the_estimate_grows_with_pixels_and_is_refused_above_the_limit():
    small, big = estimate_bytes("edit", [(100, 100)]), estimate_bytes("edit", [(7999, 7999)])
    assert small < 20 << 20 < 1 << 30 < big
    assert estimate_bytes("score", [(1000, 1000)]) > estimate_bytes("caption", [(1000, 1000)])
    check_estimate("edit", small, 64 << 20)
    with pytest.raises(Refusal) as info:
        check_estimate("edit", big, 1 << 30, (7999, 7999))
    assert info.value.status == 413 and "7999x7999" in info.value.detail and "1024.0 MB" in info.value.detail


def test_the_budget_makes_requests_wait_for_room_until_their_deadline():
    budget = MemoryBudget(100)
    first = budget.reserve(70, time.monotonic() + 1)
    with pytest.raises(Refusal) as info:  # no room before the deadline
        budget.reserve(50, time.monotonic() + 0.3)
    assert info.value.status == 503
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Refusal):  # abandoned while it waited
        budget.reserve(50, time.monotonic() + 10, cancel)
    threading.Timer(0.2, first.release).start()
    started = time.monotonic()
    with budget.reserve(50, time.monotonic() + 5):  # room once the first is done
        assert 0.1 < time.monotonic() - started < 3 and budget.used == 50
    first.release()  # idempotent
    assert budget.used == 0 and budget.peak == 70
