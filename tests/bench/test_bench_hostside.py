"""``python -m bench.hostside`` prints the agent's own CPU per turn (upload, first localized turn, follow-up,
global turn) with a worker that answers at once; the figures are not asserted (a benchmark, not a timed test),
but the turns must really run: each edit turn makes one attempt and a new version."""

from __future__ import annotations

from bench.hostside import main


def test_bench_hostside_prints_every_turn(capsys):
    assert main(["--size", "320x240", "--runs", "1"]) == 0
    printed = capsys.readouterr().out
    assert "instant stand-in worker" in printed and "measured" in printed
    for turn in ("upload", "first localized turn", "follow-up", "global turn"):
        row = next(line for line in printed.splitlines() if line.startswith(f"| 320x240 | {turn} |"))
        attempts = int(row.split("|")[3])
        assert attempts == (0 if turn == "upload" else 1), row
