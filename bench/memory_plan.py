"""Which editors fit a 24 / 48 / 80 GB GPU resident, and which need offloading: ``python -m bench.memory_plan DIR``.

``DIR`` is a models folder with the full-size configurations (``localedit models make-random DIR``;
or real weights). Every figure is COMPUTED from parameter counts (counted on the meta device by
:func:`tools.models.parameter_counts`), times the bytes per parameter each role runs in on CUDA
(bf16 for qwen-edit, kontext and klein, fp16 for the rest, fp32 for Segment Anything), not measured:
activations, the CUDA context and allocator slack are NOT in it, so :data:`HEADROOM_GB` is kept free.

* **resident**: the editor's weights, plus the models every localized turn also keeps resident
  (GroundingDINO, SAM, CLIP; with ``--grounder sam3`` SAM 3 instead of GroundingDINO + SAM), fit with
  the headroom;
* **model offload** (``LOCALEDIT_OFFLOAD=model``, diffusers' model CPU offload): the largest single
  component (the transformer) fits with the headroom;
* **no**: not even the largest component fits: it needs group / sequential offload or quantisation,
  which localedit does not do.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HEADROOM_GB = 4.0
"""Kept free for activations, the CUDA context and allocator slack (an assumption: measure on the GPU)."""

GPUS_GB = (24, 48, 80)
BYTES = {"qwen-edit": 2, "kontext": 2, "klein": 2, "sam": 4}
"""Bytes per parameter on CUDA (default 2: fp16)."""

EDITORS = {"ip2p": "ip2p, ip2p-composite, regionwise", "sd": "diffedit", "inpaint": "inpaint",
           "qwen-edit": "qwen-edit", "kontext": "kontext", "klein": "klein"}
ALWAYS = {"groundingdino": ("detector", "sam", "clip"), "sam3": ("sam3", "clip")}


def gigabytes(role: str, params: int) -> float:
    return params * BYTES.get(role, 2) / 1e9


def plan(counts: dict[str, dict]) -> list[dict]:
    """One row per (editor role, grounder): weights in GB and the verdict per GPU size."""
    rows = []
    for role, names in EDITORS.items():
        info = counts.get(role)
        if not info or info.get("params") is None:
            continue
        weights = gigabytes(role, info["params"])
        largest = max(gigabytes(role, n) for n in info["components"].values())
        for grounder, others in ALWAYS.items():
            if any(counts.get(o, {}).get("params") is None for o in others):
                continue
            rest = sum(gigabytes(o, counts[o]["params"]) for o in others)
            verdicts = {}
            for gpu in GPUS_GB:
                if weights + rest + HEADROOM_GB <= gpu:
                    verdicts[gpu] = "resident"
                elif largest + rest + HEADROOM_GB <= gpu:
                    verdicts[gpu] = "model offload"
                else:
                    verdicts[gpu] = "no"
            rows.append({"role": role, "editors": names, "grounder": grounder, "weights_gb": weights,
                         "largest_gb": largest, "others_gb": rest, **{f"{g}GB": v for g, v in verdicts.items()}})
    return rows


def table(rows: list[dict]) -> str:
    lines = [f"COMPUTED from parameter counts (meta device) x bytes per parameter (bf16 qwen-edit / kontext / klein, fp16 "
             f"others, fp32 SAM); activations not counted, {HEADROOM_GB:g} GB kept free. Not measured.", "",
             "| editor(s) | grounder | editor weights GB | largest component GB | other resident GB | "
             + " | ".join(f"{g} GB" for g in GPUS_GB) + " |",
             "|---|---|---|---|---|" + "---|" * len(GPUS_GB)]
    for r in rows:
        lines.append(f"| {r['editors']} | {r['grounder']} | {r['weights_gb']:.1f} | {r['largest_gb']:.1f} | "
                     f"{r['others_gb']:.1f} | " + " | ".join(r[f"{g}GB"] for g in GPUS_GB) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from tools.config import Settings
    from tools.models import SPECS, model_sources, parameter_counts

    p = argparse.ArgumentParser(prog="python -m bench.memory_plan", description=__doc__.split("\n")[0])
    p.add_argument("models", help="models folder with full-size configurations (localedit models make-random)")
    args = p.parse_args(argv)
    settings = Settings(models_dir=Path(args.models), _env_file=None)
    sources = model_sources(settings)
    needed = set(EDITORS) | {r for rs in ALWAYS.values() for r in rs}
    counts = {role: parameter_counts(role, sources[role], settings) or {} for role in SPECS if role in needed}
    print(table(plan(counts)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
