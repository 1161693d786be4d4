"""The bounded soak: a few hundred mixed good and hostile requests, six at once, against one worker on
loopback (`bench.soak` is the same run at any size). The worker must answer no 5xx, still serve, and
stay within the stated memory bound: its memory after warm-up + LOCALEDIT_MAX_REQUEST_MEMORY + 128 MB.
"""

from __future__ import annotations

import pytest

from bench.soak import SLACK, soak
from tests.helpers.worker import MAX_REQUEST_MEMORY, TOKEN, no_tracebacks


@pytest.mark.slow
def test_a_bounded_soak_leaves_the_worker_serving_within_its_memory_bound(worker_process):
    soaked = worker_process
    result = soak(soaked.url, TOKEN, requests=300, concurrency=6, seed=1, memory=soaked.memory)
    by_case = result["by_case"]
    print(result["wall_s"], "s;", {case: dict(counts) for case, counts in sorted(by_case.items())},
          result["memory_before"], result["memory_after"])
    assert result["server_errors"] == [], result["server_errors"][:5]
    assert result["client_errors"] == {}
    assert result["serving_after"] and soaked.proc.poll() is None
    good = sum(n for case, counts in by_case.items() if case.startswith("good_") for s, n in counts.items() if s == 200)
    refused = sum(n for counts in by_case.values() for s, n in counts.items() if 400 <= s < 500)
    assert good >= 100 and refused >= 80, by_case  # both halves of the mix really ran
    assert set(by_case["memory_bomb"]) == {413} and set(by_case["stalled_upload"]) == {408}
    assert set(by_case["nan_json"]) == {400} and set(by_case["deep_json"]) == {400}
    before, after = result["memory_before"], result["memory_after"]
    assert after["VmHWM"] <= before["VmRSS"] + MAX_REQUEST_MEMORY + SLACK, (before, after)
    no_tracebacks(soaked)
