"""``python -m bench.gpu`` prints one table with every stage, the cold, follow-up and global turns at 1 and
at the default attempts, in both memory modes (issue 22's done-when), and the judge's retries one call each
and batched, here on tiny models on the CPU: a
wiring check, so the figures themselves are not asserted."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest

from bench.gpu import COMPILE_NOT_RUN, conversation, main, print_table
from bench.hostside import InstantWorker, photo
from tools.config import Settings


@pytest.mark.slow
def test_bench_gpu_prints_stages_turns_and_both_memory_modes(tiny_models_dir, tmp_path, capsys):
    out = tmp_path / "gpu.json"
    assert main(["--models", str(tiny_models_dir), "--device", "cpu", "--max-side", "64", "--steps", "2",
                 "--size", "96x72", "--editors", "ip2p-composite", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    for part in ("device CPU", "dtype bfloat16", "work size 64", "2 steps", "measured"):
        assert part in result["header"], part
    rows = {(r["mode"], r["row"], r.get("attempts_cap")): r for r in result["rows"]}
    for mode in ("resident", "offload"):
        for stage in ("caption", "ground", "segment", "edit ip2p-composite", "score"):
            row = rows[(mode, stage, None)]
            assert row["cold"] > 0 and row["warm"] is not None and row["peak"] > 0, (mode, stage)
        assert rows[(mode, "warm-up (every stage once at the real shape)", None)]["cold"] > 0
        for cap in ("1", "3 (default)"):
            for turn in ("turn: localized, cold", "turn: follow-up", "turn: global"):
                row = rows[(mode, turn, cap)]
                assert row["seconds"] > 0 and row["peak"] > 0 and row["attempts"], (mode, turn, cap)
        assert len(rows[(mode, "turn: localized, cold", "1")]["attempts"]) == 1
        assert len(rows[(mode, "turn: global", "1")]["attempts"]) == 1
        assert f"| {mode} | turn: follow-up |" in printed
    for n, ways in ((1, ("one call each",)), (2, ("one call each", "one batched call")),
                    (3, ("one call each", "one batched call"))):  # the judge's retries, batched or not
        for way in ways:
            row = rows[("resident", f"retries: {n} attempt(s), {way}", None)]
            assert row["warm"] > 0 and row["peak"] > 0, (n, way)
    assert "| resident | retries: 3 attempt(s), one batched call |" in printed
    assert not any("retries" in r["row"] for r in result["rows"] if r["mode"] == "offload")
    compile_row = rows[("resident", "edit ip2p-composite, compile", None)]  # CUDA only by default: says why
    assert compile_row["error"] == COMPILE_NOT_RUN and "cold" not in compile_row
    assert "| resident | edit ip2p-composite, compile | - | not run: off by default on a CPU" in printed
    assert "wall time of the whole run" in printed
    assert not any("compile" in r["row"] for r in result["rows"] if r["mode"] == "offload")


class SlowGrounder(InstantWorker):
    """The instant stand-in whose grounding takes longer than a user's turn allows in these settings."""

    def ground(self, image, phrase, **kwargs):
        time.sleep(0.3)
        return super().ground(image, phrase, **kwargs)


def test_the_turns_run_without_the_users_per_call_limits(tmp_path, capsys):
    """The first full-size CPU run timed three turns that edited nothing: the 30 s grounding limit of a
    user's turn abandoned the cold models. The benchmark's turns wait, and a turn without an edit says FAILED."""
    size = (160, 120)
    box = (16.0, 36.0, 64.0, 96.0)
    bench = SimpleNamespace(worker=SlowGrounder(box), box=box, fresh=lambda: photo(size, 1), device="cpu")
    settings = Settings(data_dir=tmp_path, ground_timeout=0.05, _env_file=None)
    rows = conversation(bench, settings, tmp_path, 1)
    assert [len(r["attempts"]) for r in rows] == [1, 1, 1] and not any(r.get("failed") for r in rows)
    for row in rows:
        row["mode"] = "resident"
    failed = {**rows[0], "attempts": [], "failed": "I couldn't find a cat in the photo."}
    print_table("header", [failed, rows[1]], cuda=False)
    printed = capsys.readouterr().out
    assert "| resident | turn: localized, cold | FAILED, no edit: I couldn't find a cat" in printed
    assert "| resident | turn: follow-up | 1 of 1 |" in printed
