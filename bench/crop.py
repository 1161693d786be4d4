"""What editing the region's crop buys: ``python -m bench.crop [--photo 2000x1330] [--shares 0.01,0.05,0.2]``.

For a photo and a square-ish region covering each ``share`` of it, and for each editor family, the
table gives, without the crop (the whole photo scaled to the editor's working size) and with it
(:func:`tools.crop.plan_crop`: the region plus context at the editor's native size):

* the working size and the working pixels the region gets (its resolution inside the editor);
* the denoiser's cost of one step in TFLOPs: the UNet (Stable Diffusion 1.5, InstructPix2Pix) or
  the transformer (FLUX.1 Kontext, Qwen-Image-Edit), one forward pass, batch 1 (classifier-free
  guidance multiplies it by 2 or 3 in all columns alike);
* the cost the whole photo would take for the region to get the crop's resolution (the only other
  way to edit it at that resolution), and the factor the crop saves.

All figures are COMPUTED, not measured: FLOPs are counted by ``torch.utils.flop_counter`` on the
published configurations built on the meta device (no weights, no GPU), at the token counts each
pipeline feeds its denoiser (FLUX.1 Kontext and Qwen-Image-Edit attend over the output latents, the
input image's latents and the text: 512 T5 tokens; about 250 Qwen2.5-VL tokens for Edit Plus's
384 x 384 condition image and a short instruction).
"""

from __future__ import annotations

import argparse
import math
from functools import lru_cache
from typing import Callable

import numpy as np

from tools.crop import area_size, plan_crop
from tools.images import work_size

FAMILIES = {"sd": ("Stable Diffusion 1.5 UNet (ip2p, diffedit, regionwise, inpaint)", 512, "side"),
            "kontext": ("FLUX.1 Kontext transformer", 1024, "area"),
            "qwen-edit": ("Qwen-Image-Edit transformer", 1024, "area")}
"""family -> (what is counted, native side, whether the native size is a long side or a square area)."""

TEXT_TOKENS = {"kontext": 512, "qwen-edit": 250}


@lru_cache(maxsize=None)
def _denoiser(family: str):
    import torch

    from tools.fullsize import public_config

    with torch.device("meta"):
        if family == "sd":
            from diffusers import UNet2DConditionModel

            return UNet2DConditionModel.from_config(public_config("sd15-unet"))
        if family == "kontext":
            from diffusers import FluxTransformer2DModel

            return FluxTransformer2DModel.from_config(public_config("flux1-kontext-transformer"))
        from diffusers import QwenImageTransformer2DModel

        return QwenImageTransformer2DModel.from_config(public_config("qwen-image-edit-transformer"))


@lru_cache(maxsize=None)
def step_flops(family: str, work: tuple[int, int]) -> float:
    """FLOPs of one denoiser forward pass at the working size ``work`` (width, height), batch 1."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = _denoiser(family)
    w, h = work
    with torch.device("meta"), torch.no_grad(), FlopCounterMode(display=False) as counter:
        if family == "sd":
            model(torch.randn(1, 4, h // 8, w // 8), torch.tensor([10]), torch.randn(1, 77, 768))
        elif family == "kontext":
            n, t = 2 * (h // 16) * (w // 16), TEXT_TOKENS[family]  # output latents + the input image's
            model(hidden_states=torch.randn(1, n, 64), encoder_hidden_states=torch.randn(1, t, 4096),
                  pooled_projections=torch.randn(1, 768), timestep=torch.tensor([0.5]),
                  img_ids=torch.zeros(n, 3), txt_ids=torch.zeros(t, 3), guidance=torch.tensor([2.5]))
        else:
            lat = (1, h // 16, w // 16)
            t = TEXT_TOKENS[family]
            model(hidden_states=torch.randn(1, 2 * lat[1] * lat[2], 64), encoder_hidden_states=torch.randn(1, t, 3584),
                  encoder_hidden_states_mask=torch.ones(1, t), timestep=torch.tensor([0.5]),
                  img_shapes=[[lat, lat]])
    return float(counter.get_total_flops())


def _work(family: str, size: tuple[int, int]) -> tuple[int, int]:
    _, native, kind = FAMILIES[family]
    return work_size(size, native) if kind == "side" else area_size(size, native * native)


def _region(photo: tuple[int, int], share: float) -> np.ndarray:
    """A region of ``share`` of the photo with the photo's aspect, left of centre (a typical subject)."""
    w, h = photo
    rw, rh = max(1, round(w * math.sqrt(share))), max(1, round(h * math.sqrt(share)))
    x0, y0 = int(w * 0.3), int(h * 0.4)
    mask = np.zeros((h, w), dtype=bool)
    mask[y0:y0 + rh, x0:x0 + rw] = True
    return mask


def rows(photo: tuple[int, int], shares: list[float], families: list[str],
         flops: Callable[[str, tuple[int, int]], float] = step_flops) -> list[dict]:
    """One row per (share, family): sizes, the region's working pixels and TFLOPs per step."""
    out = []
    for share in shares:
        mask = _region(photo, share)
        ys, xs = np.nonzero(mask)
        rw, rh = int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)
        for family in families:
            native = FAMILIES[family][1]
            whole = _work(family, photo)
            crop = plan_crop(mask, native)
            crop_work = whole if crop is None else (_work(family, crop.size) if FAMILIES[family][2] == "side"
                                                    else crop.work)
            crop_size = photo if crop is None else crop.size
            scale_whole, scale_crop = whole[0] / photo[0], crop_work[0] / crop_size[0]
            same_res = (int(photo[0] * scale_crop) // 16 * 16, int(photo[1] * scale_crop) // 16 * 16)
            f_whole, f_crop, f_same = flops(family, whole), flops(family, crop_work), flops(family, same_res)
            out.append({"share": share, "family": family, "whole_work": whole,
                        "whole_region_px": (round(rw * scale_whole), round(rh * scale_whole)),
                        "crop": None if crop is None else crop.box, "crop_work": crop_work,
                        "crop_region_px": (round(rw * scale_crop), round(rh * scale_crop)),
                        "tflops_whole": f_whole / 1e12, "tflops_crop": f_crop / 1e12,
                        "same_res_work": same_res, "tflops_same_res": f_same / 1e12,
                        "saving": f_same / f_crop if f_crop else float("nan")})
    return out


def table(photo: tuple[int, int], data: list[dict]) -> str:
    """The rows as a Markdown table, labelled computed."""
    def wh(v) -> str:
        return f"{v[0]}x{v[1]}"

    lines = [f"Photo {photo[0]}x{photo[1]}. COMPUTED (torch FlopCounterMode on the meta device, published configs, "
             "one denoiser pass, batch 1), not measured.", "",
             "| region share | denoiser | no crop: work / region px / TFLOPs | crop box | crop: work / region px / "
             "TFLOPs | whole photo at the crop's resolution: work / TFLOPs | crop saves |",
             "|---|---|---|---|---|---|---|"]
    for r in data:
        crop = "none (whole photo)" if r["crop"] is None else "{}..{}, {}..{}".format(
            r["crop"][0], r["crop"][2], r["crop"][1], r["crop"][3])
        lines.append(f"| {r['share']:.0%} | {r['family']} | {wh(r['whole_work'])} / {wh(r['whole_region_px'])} / "
                     f"{r['tflops_whole']:.2f} | {crop} | {wh(r['crop_work'])} / {wh(r['crop_region_px'])} / "
                     f"{r['tflops_crop']:.2f} | {wh(r['same_res_work'])} / {r['tflops_same_res']:.2f} | "
                     f"{r['saving']:.1f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.crop", description=__doc__.split("\n")[0])
    p.add_argument("--photo", default="2000x1330", help="photo size WxH")
    p.add_argument("--shares", default="0.01,0.05,0.2", help="region shares of the photo, comma-separated")
    p.add_argument("--editors", default="sd,kontext,qwen-edit", help=f"denoiser families: {', '.join(FAMILIES)}")
    args = p.parse_args(argv)
    photo = tuple(int(v) for v in args.photo.lower().split("x"))
    families = [f for f in args.editors.split(",") if f]
    unknown = [f for f in families if f not in FAMILIES]
    if unknown or len(photo) != 2:
        p.error(f"unknown family {unknown[0]!r}" if unknown else "give the photo as WxH")
    print(table(photo, rows(photo, [float(s) for s in args.shares.split(",")], families)))  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
