"""``python -m bench.hostside`` prints the agent's own CPU per turn (upload, first localized turn, follow-up,
global turn) with a worker that answers at once; the figures are not asserted (a benchmark, not a timed test),
but the turns must really run: each edit turn makes one attempt and a new version."""

from __future__ import annotations

from bench.hostside import main, verdicts


def test_bench_hostside_prints_every_turn(capsys):
    assert main(["--size", "320x240", "--runs", "1"]) == 0
    printed = capsys.readouterr().out
    assert "instant stand-in worker" in printed and "measured" in printed
    for turn in ("upload", "first localized turn", "follow-up", "global turn"):
        row = next(line for line in printed.splitlines() if line.startswith(f"| 320x240 | {turn} |"))
        attempts = int(row.split("|")[3])
        assert attempts == (0 if turn == "upload" else 1), row
    assert "320x240, target 0.4 s of agent CPU per turn" in printed


def test_verdicts_say_when_a_turn_misses_the_target_or_the_follow_up_is_dearer():
    good = verdicts({("2000x1330", "first localized turn"): 0.33, ("2000x1330", "follow-up"): 0.30}, ["2000x1330"])
    assert "first localized turn: 0.330 s: meets the 0.4 s target" in "\n".join(good)
    assert "follow-up: 0.300 s: meets" in "\n".join(good) and "follow-up cheaper than the first turn" in "\n".join(good)
    bad = "\n".join(verdicts({("s", "first localized turn"): 0.46, ("s", "follow-up"): 0.5}, ["s"]))
    assert "first localized turn: 0.460 s: MISSES the 0.4 s target" in bad
    assert "follow-up: 0.500 s: MISSES" in bad and "follow-up NOT cheaper than the first turn" in bad
