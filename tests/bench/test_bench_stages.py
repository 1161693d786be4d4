"""``python -m bench.stages`` prints every stage with its time and memory (issue 13's done-when), here on
the tiny models at a small size so it stays a wiring check: the figures themselves are not asserted."""

from __future__ import annotations

import json

from bench.stages import DEFAULT_EDITORS, main


def test_bench_stages_reports_every_stage_the_turn_an_option_and_the_memory_modes(tiny_models_dir, tmp_path,
                                                                                   capsys):
    out = tmp_path / "stages.json"
    main(["--models", str(tiny_models_dir), "--device", "cpu", "--max-side", "64", "--steps", "2", "--runs", "1",
          "--size", "96x72", "--options", "dpm++", "--option-steps", "2", "--few-steps", "2", "--json", str(out)])
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    header = result["header"]
    for part in ("device CPU", "dtype bfloat16", "photo 96x72", "work sizes [64]", "2 steps"):
        assert part in header, part  # what the figures were measured on
    stages = {row["stage"]: row for row in result["stages"]}
    assert set(stages) == {"caption", "ground", "segment", "score", *(f"edit {e}" for e in DEFAULT_EDITORS)}
    for name, row in stages.items():
        assert row["side"] == 64 and row["cold"] > 0 and len(row["warm"]) == 1, name
        assert row["peak"] > 0 and row["rise"] >= 0, name  # peak RSS on the CPU
        assert f"| {name} | 64 |" in printed, name
    turn = result["turn"]
    assert turn["seconds"] > 0 and turn["peak"] > 0 and turn["attempts"]
    assert [o["option"] for o in result["options"]] == ["default", "dpm++"]
    assert {m["role"] for m in result["memory"]} >= {"caption", "detector", "sam", "ip2p", "clip"}
    assert set(result["modes"]) == {"all resident", "offload"}
    assert "fit a 24 GB GPU (computed, not measured on a GPU)" in printed  # "would fit" or "would NOT fit"
    assert "fit a 12 GB GPU (computed, not measured on a GPU)" in printed
    assert "all resident: computed need" in printed and "GPU memory per mode, COMPUTED (not measured" in printed


def test_a_turn_that_edited_nothing_is_reported_as_failed(capsys):
    """On a CPU the whole turn once hit a user's 30 s grounding limit and the table gave its 30 s as a turn's
    time; a turn without an edit now says FAILED with its reply, one with an edit gives its time."""
    from types import SimpleNamespace

    from bench.stages import print_report

    bench = SimpleNamespace(loads=[], rows=[])
    failed = {"side": 256, "seconds": 30.1, "peak": 0, "attempts": [], "caption_cached": True,
              "text": "The grounding model did not answer within 30 s; try again in a moment."}
    print_report(bench, "header", failed, [], [])
    assert "turn at 256: FAILED, no edit was made (30.1 s); reply: The grounding model" in capsys.readouterr().out
    print_report(bench, "header", {**failed, "attempts": ["ip2p-composite"], "text": "Done."}, [], [])
    printed = capsys.readouterr().out
    assert "FAILED" not in printed and "turn at 256: 30.1 s" in printed and "1 attempt(s): ip2p-composite" in printed
