"""The LLM path against the parser alone, over the phrasing table (``bench.phrasings``), with any server.

    python -m bench.llm --smollm2                              # SmolLM2-135M via transformers serve (no download)
    python -m bench.llm                                        # the configured LLM (LOCALEDIT_LLM_* / OPENAI_*)
    python -m bench.llm --base-url http://127.0.0.1:11434/v1 --model llama3.2    # any OpenAI-compatible server
    python -m bench.llm --limit 20 --group remove --json runs/llm.json --verbose
    python -m bench.llm --report runs/llm.json                 # the tables again, from the rows

Every case is read twice: by the built-in parser alone (``agent.language.parser.read``) and by the
``Understander`` with the LLM, in one process and one conversation-free context each (the case's
caption and, for follow-ups, its last edit). Printed:

* path shares: ``llm-tool`` / ``llm-json`` / ``llm-repair`` (the LLM's plan), ``parser-check`` (the LLM
  answered, the parser's reading won), ``offline-fallback`` (the LLM failed or answered nothing
  usable), ``parser-fast`` (a command or greeting: the LLM was not asked);
* action and target accuracy of the final plans, of the parser alone, and of the LLM's own answers
  (before the parser's check; a failed request counts as wrong), over the whole table and per group;
* clear edits answered with chat (the parser read an edit, the turn answered with a reply);
* seconds per turn, p50 / p95, over all turns and over the turns that asked the LLM.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from agent.language.llm import Understander
from agent.language.llm_client import make_llm
from agent.language.parser import ParseContext, read
from agent.language.plan import Chat, EditPlan
from bench.phrasings import LAST, PHRASINGS, SCENES, Phrasing, action_right, kind_of, target_right
from tools.config import Settings

PATHS = ("llm-tool", "llm-json", "llm-repair", "parser-check", "offline-fallback", "parser-fast")


def _describe(result: Any) -> str:
    if isinstance(result, EditPlan):
        return f"{result.action} {result.target!r}" + (f" -> {result.new_value!r}" if result.new_value else "")
    return kind_of(result) if result is not None else "-"


def run_case(understander: Understander, case: Phrasing) -> dict[str, Any]:
    """One case through the parser alone and through the LLM path: a row of the results."""
    context = ParseContext(caption=SCENES[case.scene], last_plan=LAST.get(case.last))
    t0 = time.perf_counter()
    reading = read(case.text, context)
    parser_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = understander.understand(case.text, context)
    seconds = time.perf_counter() - t0
    own = out.proposed if out.path == "parser-check" else (out.result if out.path.startswith("llm-") else None)
    return {
        "text": case.text, "group": case.group, "accept": "|".join(case.accept), "target": case.target,
        "path": out.path, "seconds": round(seconds, 3), "parser_seconds": round(parser_s, 4),
        "final": _describe(out.result), "parser": _describe(reading.result), "llm": _describe(own),
        "final_action": action_right(case, out.result), "final_target": target_right(case, out.result),
        "parser_action": action_right(case, reading.result), "parser_target": target_right(case, reading.result),
        "llm_action": own is not None and action_right(case, own),
        "llm_target": own is not None and target_right(case, own),
        "asked": out.path != "parser-fast",
        "chat_for_edit": reading.source == "edit" and isinstance(reading.result, EditPlan)
        and isinstance(out.result, Chat),
        "note": out.note,
    }


def _pct(rows: Sequence[dict], key: str) -> str:
    return f"{100 * sum(bool(r[key]) for r in rows) / len(rows):.1f} %" if rows else "-"


def _quantile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1]


def report(rows: Sequence[dict], title: str) -> str:
    """The printed tables (markdown)."""
    n = len(rows)
    asked = [r for r in rows if r["asked"]]
    counts = Counter(r["path"] for r in rows)
    failed = sum(r["path"] == "offline-fallback" and _failed(r["note"]) for r in rows)
    out = [f"## {title}", "", f"{n} phrasings, {len(asked)} sent to the LLM.", "",
           "| path | turns | share |", "|---|---|---|"]
    out += [f"| {p} | {counts.get(p, 0)} | {100 * counts.get(p, 0) / n:.1f} % |" for p in PATHS]
    out += ["", f"Of the fallbacks, {counts.get('offline-fallback', 0) - failed} had an answer that was no valid plan "
                f"and {failed} had no answer (an error or the turn's time ran out)."]
    out += ["", "| | action right | target right |", "|---|---|---|",
            f"| final plan (LLM path, checked by the parser) | {_pct(rows, 'final_action')} | {_pct(rows, 'final_target')} |",
            f"| parser alone | {_pct(rows, 'parser_action')} | {_pct(rows, 'parser_target')} |",
            f"| the LLM's own answers (turns sent to it) | {_pct(asked, 'llm_action')} | {_pct(asked, 'llm_target')} |",
            "", f"Clear edits answered with chat: {sum(r['chat_for_edit'] for r in rows)}.", "",
            "| group | cases | final action | final target | parser action | parser target |",
            "|---|---|---|---|---|---|"]
    for group in dict.fromkeys(r["group"] for r in rows):
        g = [r for r in rows if r["group"] == group]
        out.append(f"| {group} | {len(g)} | {_pct(g, 'final_action')} | {_pct(g, 'final_target')} | "
                   f"{_pct(g, 'parser_action')} | {_pct(g, 'parser_target')} |")
    every = [r["seconds"] for r in rows]
    sent = [r["seconds"] for r in asked]
    out += ["", "| seconds per turn | p50 | p95 | max |", "|---|---|---|---|",
            f"| all turns | {_quantile(every, .5):.2f} | {_quantile(every, .95):.2f} | {max(every or [0]):.2f} |",
            f"| turns sent to the LLM | {_quantile(sent, .5):.2f} | {_quantile(sent, .95):.2f} | "
            f"{max(sent or [0]):.2f} |",
            f"| parser alone | {_quantile([r['parser_seconds'] for r in rows], .5):.4f} | "
            f"{_quantile([r['parser_seconds'] for r in rows], .95):.4f} | "
            f"{max([r['parser_seconds'] for r in rows] or [0]):.4f} |"]
    return "\n".join(out)


def _failed(note: str) -> bool:
    """Whether a fallback's note says the request failed (rather than its answer being unusable)."""
    return "request failed" in note or "did not answer" in note


def run(understander: Understander, cases: Sequence[Phrasing],
        progress: Optional[Callable[[dict], None]] = None) -> list[dict]:
    """Every case through ``run_case``, in order (``progress`` sees each row)."""
    rows = []
    for case in cases:
        rows.append(run_case(understander, case))
        if progress:
            progress(rows[-1])
    return rows


def _settings(args: argparse.Namespace, base_url: Optional[str] = None, model: Optional[str] = None) -> Settings:
    overrides: dict[str, Any] = {k: v for k, v in (("llm_timeout", args.timeout), ("llm_turn_budget", args.budget),
                                                   ("llm_retries", args.retries)) if v is not None}
    if base_url or args.base_url:
        overrides["llm_base_url"] = base_url or args.base_url
    if model or args.model:
        overrides["llm_model"] = model or args.model
    return Settings(**overrides)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.llm", description=__doc__.split("\n\n")[0])
    parser.add_argument("--smollm2", action="store_true", help="start SmolLM2-135M with transformers serve")
    parser.add_argument("--base-url", help="OpenAI-compatible server (default: the configured one)")
    parser.add_argument("--model", help="model name (default: LOCALEDIT_LLM_MODEL)")
    parser.add_argument("--timeout", type=float, help="seconds per request (LOCALEDIT_LLM_TIMEOUT)")
    parser.add_argument("--budget", type=float, help="seconds of LLM time per turn (LOCALEDIT_LLM_TURN_BUDGET)")
    parser.add_argument("--retries", type=int, help="LOCALEDIT_LLM_RETRIES")
    parser.add_argument("--limit", type=int, help="only the first N cases")
    parser.add_argument("--group", action="append", help="only these groups (repeatable)")
    parser.add_argument("--json", type=Path, help="write every row here")
    parser.add_argument("--verbose", action="store_true", help="print every case as it is done")
    parser.add_argument("--report", type=Path, help="print the tables of rows written by --json, run nothing")
    args = parser.parse_args(argv)
    if args.report:
        print(report(json.loads(args.report.read_text()), f"rows from {args.report}"))
        return 0

    cases = [c for c in PHRASINGS if not args.group or c.group in args.group][: args.limit or None]

    def progress(row: dict) -> None:
        if args.verbose:
            print(f"{row['seconds']:7.2f}s {row['path']:16} {row['text'][:44]!r:48} final {row['final']}"
                  f" | parser {row['parser']} | llm {row['llm']}", file=sys.stderr, flush=True)

    def measure(settings: Settings, title: str) -> list[dict]:
        llm = make_llm(settings)
        if llm is None:
            raise SystemExit("no LLM configured: pass --smollm2, or --base-url and --model, or set "
                             "LOCALEDIT_LLM_MODEL with LOCALEDIT_LLM_BASE_URL / LOCALEDIT_LLM_API_KEY")
        rows = run(Understander(llm, settings=settings), cases, progress)
        print(report(rows, title))
        return rows

    if args.smollm2:
        from bench.smollm2 import model_dir, serve

        model = model_dir()
        with serve(model) as url:
            settings = _settings(args, base_url=url, model=str(model))
            rows = measure(settings, f"SmolLM2-135M-Instruct (transformers serve, CPU), timeout "
                                     f"{settings.llm_timeout:g} s, budget {settings.llm_turn_budget:g} s")
    else:
        settings = _settings(args)
        rows = measure(settings, f"{settings.llm_model} at {settings.llm_base_url or 'the OpenAI API'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
