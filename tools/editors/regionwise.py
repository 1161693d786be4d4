"""R-SIE's region-wise diffusion process (RwDP, section 4.1) on InstructPix2Pix.

RwDP runs two diffusion processes at once and merges them by the source mask ``m`` (the work
mask at latent resolution, 1 on the source object):

- **eq. 5**, the reconstruction latent: the input's latents ``z_rec,0 = E(X)`` noised by the
  forward process with one draw ``eps_rec`` (the first draw of the seeded generator), in closed
  form ``z_rec,T = sqrt(a_T) z_rec,0 + sqrt(1 - a_T) eps_rec`` at the start timestep ``T``;
- the generation latent ``z_gen,T ~ N(0, 1)``, drawn *independently of the input* (the
  generator's second draw), so the region can leave the old object's shape behind;
- **eq. 6**: ``z_T = (1 - m) z_rec,T + m z_gen,T``;
- **eq. 8-9**: at every step the noise is ``eps_RwDP = m eps_gen + (1 - m) alpha* eps_rec``, with
  ``eps_gen`` InstructPix2Pix's three-way classifier-free guidance on the whole latent
  (text + image, image only, unconditional, as the pipeline combines them), then one DDIM step;
- **eq. 7**: ``alpha* = argmin_alpha ||z_rec,0 - z^_0(alpha)||^2``, where ``z^_0(alpha)`` is the
  preliminary reconstruction: the same scheduler and steps from ``z_rec,T`` with
  ``alpha eps_rec`` as the noise prediction everywhere. Only the scheduler runs (no UNet, as the
  paper says); :func:`optimise_alpha` takes Newton steps on ``alpha`` with autograd through the
  scheduler (the loss is quadratic in ``alpha`` for DDIM, so it settles in two or three), at most
  ``alpha_iters`` of them (R-SIE: 100 gradient steps). ``fit_alpha=False`` keeps ``alpha = 1``.

A DDIM step acts on each latent cell alone, so outside the mask the latents follow the
preliminary reconstruction's trajectory exactly, while the UNet sees the whole image. A
deterministic DDIM scheduler is built from the pipeline's config, so the generator's two draws
are the only randomness. ``strength`` (the encoding ratio) picks ``T``: R-SIE runs the full
schedule (``strength = 1``); a lower one starts later with fewer steps, and the region still
starts from noise independent of the input.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import torch
from diffusers import DDIMScheduler
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from tools.editors import (EditorOutput, ProgressFn, ddim_config, decode_latents, denoising_count,
                           encode_image, latent_mask)
from tools.types import LocaleditError


@dataclass
class RegionStep:
    """The state after one region-wise step, for ``step_hook`` (tests, debugging, previews)."""

    index: int  # 0-based step
    timestep: Optional[int]  # the timestep the latents are now at; None once fully denoised
    latents: torch.Tensor  # z after this step
    reconstruction: torch.Tensor  # the preliminary reconstruction (alpha* eps_rec everywhere) after this step
    start: torch.Tensor  # z_T (eq. 6)
    init_latents: torch.Tensor  # z_rec,0 = E(X)
    noise: torch.Tensor  # eps_rec, drawn once and reused
    generation: torch.Tensor  # z_gen,T, drawn independently of the input
    mask: torch.Tensor  # (1, 1, h, w) bool latent mask, True = the source region
    alpha: float  # alpha* of eq. 7 (1.0 when the fit is off)


def reconstruct(scheduler: DDIMScheduler, start: torch.Tensor, noise: torch.Tensor, alpha: Any,
                timesteps: torch.Tensor) -> list[torch.Tensor]:
    """The preliminary backward process of eq. 7: ``scheduler`` steps from ``start`` over
    ``timesteps`` with ``alpha * noise`` as the noise prediction. Returns the latents after each
    step (differentiable in ``alpha`` when it is a tensor that requires grad)."""
    trajectory, z = [], start
    for t in timesteps:
        z = scheduler.step(alpha * noise, t, z, return_dict=False)[0]
        trajectory.append(z)
    return trajectory


@dataclass
class AlphaFit:
    """The result and cost of fitting eq. 7's alpha."""

    alpha: float
    iterations: int  # Newton steps taken
    scheduler_steps: int  # scheduler evaluations (forward passes of the preliminary process)
    seconds: float
    loss_at_one: float  # mean ||z_rec,0 - z^_0(1)||^2
    loss: float  # mean ||z_rec,0 - z^_0(alpha*)||^2
    converged: bool

    def to_dict(self) -> dict[str, Any]:
        return {"iterations": self.iterations, "scheduler_steps": self.scheduler_steps,
                "seconds": round(self.seconds, 4), "loss_at_one": self.loss_at_one, "loss": self.loss,
                "converged": self.converged}


def optimise_alpha(scheduler: DDIMScheduler, init_latents: torch.Tensor, noise: torch.Tensor,
              timesteps: torch.Tensor, max_iters: int = 100, tol: float = 1e-6) -> AlphaFit:
    """Eq. 7: the ``alpha`` that makes the scheduler-only reconstruction land on ``init_latents``.

    Newton steps on the mean squared error, with its first and second derivatives by autograd
    through :func:`reconstruct` (float32), from ``alpha = 1`` (R-SIE's start); a step that would
    not descend (non-positive curvature) becomes a plain gradient step. Stops when a step moves
    alpha by less than ``tol`` or after ``max_iters`` steps.
    """
    started = time.perf_counter()
    x0, eps = init_latents.detach().float(), noise.detach().float()
    z_start = scheduler.add_noise(x0, eps, timesteps[:1])

    def loss_of(alpha: torch.Tensor) -> torch.Tensor:
        return ((reconstruct(scheduler, z_start, eps, alpha, timesteps)[-1] - x0) ** 2).mean()

    alpha, converged, iterations, evaluations = 1.0, False, 0, 0
    loss_at_one: Optional[float] = None
    with torch.enable_grad():
        for iterations in range(1, max(1, int(max_iters)) + 1):
            a = torch.tensor(alpha, dtype=torch.float32, device=x0.device, requires_grad=True)
            loss = loss_of(a)
            evaluations += 1
            if loss_at_one is None:
                loss_at_one = float(loss.detach())
            (grad,) = torch.autograd.grad(loss, a, create_graph=True)
            (curvature,) = torch.autograd.grad(grad, a)
            g, c = float(grad.detach()), float(curvature)
            step = g / c if c > 0 else g
            alpha = float(min(10.0, max(0.0, alpha - step)))
            if abs(step) < tol:
                converged = True
                break
    with torch.no_grad():
        final = float(loss_of(torch.tensor(alpha, dtype=torch.float32, device=x0.device)))
    evaluations += 1
    return AlphaFit(alpha, iterations, evaluations * len(timesteps), time.perf_counter() - started,
                    float(loss_at_one), final, converged)


class RegionwiseEditor:
    """Region-wise InstructPix2Pix (R-SIE RwDP) on a loaded ``StableDiffusionInstructPix2PixPipeline``."""

    def __init__(self, pipe):
        self.pipe = pipe
        self.scheduler = DDIMScheduler.from_config(ddim_config(pipe.scheduler.config))
        if self.scheduler.config.prediction_type != "epsilon":
            raise LocaleditError("Region-wise editing needs a pipeline that predicts noise (epsilon), "
                                 f"not {self.scheduler.config.prediction_type}.")

    @torch.no_grad()
    def __call__(
        self,
        image: Image.Image,
        mask: np.ndarray,
        instruction: str,
        *,
        strength: float = 1.0,
        num_inference_steps: int = 20,
        guidance_scale: float = 7.5,
        image_guidance_scale: float = 1.5,
        fit_alpha: bool = True,
        alpha_iters: int = 100,
        generator: Optional[torch.Generator] = None,
        progress: Optional[ProgressFn] = None,
        step_hook: Optional[Callable[[RegionStep], None]] = None,
    ) -> EditorOutput:
        """Regenerate the masked region of ``image`` as ``instruction`` says; the rest reconstructs the input.

        Args:
            image (`PIL.Image.Image`):
                The RGB image at the work size (sides multiples of 8).
            mask (`np.ndarray`):
                Bool ``(height, width)`` work-size mask of the source object (already dilated).
            instruction (`str`):
                The InstructPix2Pix instruction, e.g. "turn the cat into a fox".
            strength (`float`, defaults to 1.0):
                The encoding ratio in ``(0, 1]``: the start timestep ``T`` as a fraction of the
                schedule (R-SIE: 1, the full schedule).
            num_inference_steps (`int`, defaults to 20):
                Steps of the full schedule; ``int(num_inference_steps * strength)`` (at least one) run.
            guidance_scale (`float`, defaults to 7.5):
                Text guidance (instruction) of ``eps_gen``.
            image_guidance_scale (`float`, defaults to 1.5):
                Image guidance of ``eps_gen`` (closeness to the input image).
            fit_alpha (`bool`, defaults to `True`):
                Fit eq. 7's alpha (scheduler only); `False` keeps ``alpha = 1``.
            alpha_iters (`int`, defaults to 100):
                At most this many optimisation steps for alpha.
            generator (`torch.Generator`, *optional*):
                The seeded generator: its first draw is ``eps_rec``, its second ``z_gen,T``.
            progress (`Callable[[int, int], None]`, *optional*):
                Called as ``progress(step, total)`` after every denoising step.
            step_hook (`Callable[[RegionStep], None]`, *optional*):
                Called after every step with the latents, the reconstruction path and the draws.

        Returns:
            `EditorOutput`: the edited image at the work size; ``info`` has ``alpha`` and
            ``alpha_fit`` (its cost: Newton steps, scheduler steps, seconds, losses).
        """
        pipe, device = self.pipe, self.pipe._execution_device
        dtype = pipe.unet.dtype
        do_cfg = guidance_scale > 1.0 and image_guidance_scale >= 1.0  # as the pipeline decides

        # Text: [instruction, "", ""] for the three guidance branches (pipeline order).
        embeds = pipe._encode_prompt(instruction, device, 1, do_cfg)
        # Image: z_rec,0 for the background, and the unscaled latents InstructPix2Pix is conditioned
        # on ([image, image, zeros] with guidance), exactly as the pipeline forms them.
        pixels, x0 = encode_image(pipe, image)
        x0 = x0.to(dtype)
        image_latents = pipe.prepare_image_latents(pixels, 1, 1, embeds.dtype, device, do_cfg)
        m = latent_mask(mask, tuple(x0.shape[-2:]), device)
        eps_rec = randn_tensor(x0.shape, generator=generator, device=device, dtype=dtype)
        z_gen = randn_tensor(x0.shape, generator=generator, device=device, dtype=dtype)

        scheduler = self.scheduler
        scheduler.set_timesteps(num_inference_steps, device=device)
        n = denoising_count(num_inference_steps, strength)
        timesteps = scheduler.timesteps[num_inference_steps - n:]

        fit = fit_alpha_info = None
        alpha = 1.0
        if fit_alpha:
            fit = optimise_alpha(scheduler, x0, eps_rec, timesteps, max_iters=alpha_iters)
            alpha, fit_alpha_info = fit.alpha, fit.to_dict()
        eps_background = (alpha * eps_rec.float()).to(dtype)
        z_rec = scheduler.add_noise(x0, eps_rec, timesteps[:1])  # eq. 5
        start = torch.where(m, z_gen, z_rec)  # eq. 6
        path = reconstruct(scheduler, z_rec, eps_background, 1.0, timesteps) if step_hook is not None else None

        latents = start
        for i, t in enumerate(timesteps):
            model_input = torch.cat([latents] * 3) if do_cfg else latents
            model_input = torch.cat([scheduler.scale_model_input(model_input, t), image_latents], dim=1)
            noise_pred = pipe.unet(model_input, t, encoder_hidden_states=embeds, return_dict=False)[0]
            if do_cfg:
                text, img, uncond = noise_pred.chunk(3)
                noise_pred = uncond + guidance_scale * (text - img) + image_guidance_scale * (img - uncond)
            eps = torch.where(m, noise_pred.to(dtype), eps_background)  # eq. 8-9
            latents = scheduler.step(eps, t, latents, return_dict=False)[0]
            if step_hook is not None:
                reached = int(timesteps[i + 1]) if i + 1 < len(timesteps) else None
                step_hook(RegionStep(i, reached, latents, path[i], start, x0, eps_rec, z_gen, m, alpha))
            if progress is not None:
                progress(i + 1, n)

        info = {"denoising_steps": n, "scheduler": "DDIMScheduler", "start_timestep": int(timesteps[0]),
                "alpha": round(alpha, 6), "alpha_fit": fit_alpha_info or {"enabled": False}}
        return EditorOutput(decode_latents(pipe, latents), info)
