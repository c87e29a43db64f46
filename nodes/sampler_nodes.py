"""Sampling nodes: the one-node original sampler, and its pieces for SamplerCustomAdvanced / KSampler."""
from __future__ import annotations

import comfy.model_management
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview
import torch
from comfy_api.latest import io

from ..dynamicrafter.schedule import denoise_span
from .controls import IMAGE_CFG_OFF, dynamicrafter_guider, image_cfg_problem, number_problem
from .registry import CATEGORY
from .sampling import DynamiCrafterKSampler, dynamicrafter_sigmas, video_guidance_rescale

AUTO = "auto"
SPACINGS = [AUTO, "uniform", "uniform_trailing"]
SWITCH = [AUTO, "on", "off"]


def _variant(model):
    variant = getattr(model.model, "variant", None)
    if variant is None:
        raise ValueError("this node needs a DynamiCrafter model: load it with a DynamiCrafter loader node")
    return variant


def _rescale_value(model, guidance_rescale: float) -> float:
    return _variant(model).sampling.guidance_rescale if guidance_rescale < 0 else guidance_rescale


def with_guidance_rescale(model, guidance_rescale: float):
    """A clone of the model whose CFG is the original's (with its video guidance rescale)."""
    variant = _variant(model)
    patched = model.clone()
    patched.set_model_sampler_post_cfg_function(
        video_guidance_rescale(_rescale_value(model, guidance_rescale), variant.schedule.prediction))
    return patched


def schedule_sigmas(model, steps: int, spacing: str, span: int | None = None):
    spacing = _variant(model).sampling.spacing if spacing == AUTO else spacing
    return dynamicrafter_sigmas(model.get_model_object("model_sampling"), steps, spacing, span)


def ddim_sampler(model, eta: float, dynamic_rescale: str, from_noise: bool = True) -> DynamiCrafterKSampler:
    enabled = _variant(model).schedule.dynamic_rescale if dynamic_rescale == AUTO else dynamic_rescale == "on"
    return DynamiCrafterKSampler(eta, enabled, from_noise)


_STEPS = io.Int.Input("steps", default=50, min=1, max=1000,
                      tooltip="DDIM steps; the original uses 50. Fewer is faster and softer.")
_ETA = io.Float.Input("eta", default=1.0, min=0.0, max=1.0, step=0.01,
                      tooltip="DDIM eta: 1.0 (the original) adds fresh noise each step; 0 is deterministic.")
_RESCALE = io.Float.Input("guidance_rescale", default=-1.0, min=-1.0, max=1.0, step=0.05,
                          tooltip="Pulls the guided prediction's contrast back toward the prompt-only one, per video. "
                                  "-1 = the model's default (0.7 for 512/1024/interp, 0 for 256).")
_SPACING = io.Combo.Input("spacing", options=SPACINGS, default=AUTO,
                          tooltip="DDIM timesteps: 'uniform_trailing' (512/1024/interp, starts at the pure-noise "
                                  "step) or 'uniform' (256). auto = the model's own.")
_DYNAMIC = io.Combo.Input("dynamic_rescale", options=SWITCH, default=AUTO,
                          tooltip="Rescales the predicted clean video by the training schedule (512/1024/interp). "
                                  "auto = the model's own setting.")

_DENOISE = io.Float.Input("denoise", default=1.0, min=0.0, max=1.0, step=0.01, optional=True,
                          tooltip="1 = a new video from noise. Below 1 the latent input is kept in part: connect "
                                  "VAE Encode of a video (or an earlier run's latent) to restyle it; 0 returns it "
                                  "unchanged.")


class DynamiCrafterSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DynamiCrafterSampler",
            display_name="DynamiCrafter Sampler",
            category=f"{CATEGORY}/sampling",
            description="The original DynamiCrafter DDIM sampler with its defaults (trailing DDIM, eta 1, CFG 7.5, "
                        "guidance rescale 0.7, dynamic rescale), with ComfyUI's previews, progress and cancel.",
            inputs=[
                io.Model.Input("model", tooltip="The DynamiCrafter model."),
                io.Conditioning.Input("positive", tooltip="From a DynamiCrafter conditioning node."),
                io.Conditioning.Input("negative", tooltip="From the same DynamiCrafter conditioning node."),
                io.Latent.Input("latent", tooltip="The empty video latent from the conditioning node."),
                io.Int.Input("seed", default=123, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Random seed of the start noise and of every step's noise."),
                _STEPS,
                io.Float.Input("cfg", default=7.5, min=1.0, max=30.0, step=0.1,
                               tooltip="Classifier-free guidance scale; the original uses 7.5."),
                _ETA, _RESCALE, _SPACING, _DYNAMIC,
                io.Float.Input("image_cfg", default=IMAGE_CFG_OFF, min=IMAGE_CFG_OFF, max=30.0, step=0.1,
                               optional=True,
                               tooltip="Image guidance apart from the text's (then cfg guides the prompt only): "
                                       "lower = freer motion, higher = closer to the picture. -1 = one scale for "
                                       "both (the original's default)."),
                _DENOISE,
            ],
            outputs=[io.Latent.Output(display_name="latent")],
        )

    @classmethod
    def validate_inputs(cls, image_cfg: float | None = None, denoise: float | None = None) -> bool | str:
        return image_cfg_problem(image_cfg) or number_problem("denoise", denoise, 0.0, 1.0) or True

    @classmethod
    def execute(cls, model, positive, negative, latent, seed, steps, cfg, eta, guidance_rescale, spacing,
                dynamic_rescale, image_cfg=IMAGE_CFG_OFF, denoise=1.0) -> io.NodeOutput:
        span = denoise_span(denoise, len(model.get_model_object("model_sampling").sigmas))
        if span == 0:
            return io.NodeOutput(latent)
        samples = comfy.sample.fix_empty_latent_channels(model, latent["samples"])
        noise = comfy.sample.prepare_noise(samples, seed, latent.get("batch_index"))
        sigmas = schedule_sigmas(model, min(steps, span), spacing, span)
        if image_cfg == IMAGE_CFG_OFF:
            guider = comfy.samplers.CFGGuider(with_guidance_rescale(model, guidance_rescale))
            guider.set_conds(positive, negative)
            guider.set_cfg(cfg)
        else:
            guider = dynamicrafter_guider(model, positive, negative, cfg, image_cfg,
                                          _rescale_value(model, guidance_rescale), _variant(model).schedule.prediction)
        callback = latent_preview.prepare_callback(model, len(sigmas) - 1)
        out = guider.sample(noise, samples, ddim_sampler(model, eta, dynamic_rescale, from_noise=denoise == 1.0),
                            sigmas, denoise_mask=latent.get("noise_mask"), callback=callback,
                            disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)
        out = out.to(comfy.model_management.intermediate_device())
        if latent.get("noise_mask") is not None:  # kept frames come back bit for bit (no VAE-scale round trip)
            mask = comfy.utils.reshape_mask(latent["noise_mask"], out.shape).to(out)
            out = mask * out + (1.0 - mask) * samples.to(out)
        return io.NodeOutput({**latent, "samples": out})


class DynamiCrafterDDIMSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DynamiCrafterDDIMSampler",
            display_name="DynamiCrafter DDIM Sampler",
            category=f"{CATEGORY}/sampling",
            description="The original DDIM update as a SAMPLER for SamplerCustom / SamplerCustomAdvanced.",
            inputs=[io.Model.Input("model", tooltip="The DynamiCrafter model (to read its schedule)."),
                    _ETA, _DYNAMIC],
            outputs=[io.Sampler.Output()],
        )

    @classmethod
    def execute(cls, model, eta, dynamic_rescale) -> io.NodeOutput:
        return io.NodeOutput(ddim_sampler(model, eta, dynamic_rescale, from_noise=None))


class DynamiCrafterScheduler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DynamiCrafterScheduler",
            display_name="DynamiCrafter Scheduler",
            category=f"{CATEGORY}/sampling",
            description="Sigmas at the original DDIM timesteps, ending at the original's last noise level.",
            inputs=[io.Model.Input("model", tooltip="The DynamiCrafter model."), _STEPS, _SPACING, _DENOISE],
            outputs=[io.Sigmas.Output()],
        )

    @classmethod
    def validate_inputs(cls, denoise: float | None = None) -> bool | str:
        return number_problem("denoise", denoise, 0.0, 1.0) or True

    @classmethod
    def execute(cls, model, steps, spacing, denoise=1.0) -> io.NodeOutput:
        span = denoise_span(denoise, len(model.get_model_object("model_sampling").sigmas))
        if span == 0:
            return io.NodeOutput(torch.FloatTensor([]))
        return io.NodeOutput(schedule_sigmas(model, min(steps, span), spacing, span))


class DynamiCrafterGuidanceRescale(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DynamiCrafterGuidanceRescale",
            display_name="DynamiCrafter Guidance Rescale",
            category=f"{CATEGORY}/sampling",
            description="Video-aware guidance rescale for stock samplers (the stock RescaleCFG works per frame).",
            inputs=[io.Model.Input("model", tooltip="The DynamiCrafter model."), _RESCALE],
            outputs=[io.Model.Output()],
        )

    @classmethod
    def execute(cls, model, guidance_rescale) -> io.NodeOutput:
        return io.NodeOutput(with_guidance_rescale(model, guidance_rescale))


class DynamiCrafterImageGuider(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DynamiCrafterImageGuider",
            display_name="DynamiCrafter Text + Image Guider",
            category=f"{CATEGORY}/sampling",
            description="A GUIDER for SamplerCustomAdvanced with the prompt's and the picture's guidance scales "
                        "apart (the original's multi-condition CFG), plus its video guidance rescale.",
            inputs=[
                io.Model.Input("model", tooltip="The DynamiCrafter model."),
                io.Conditioning.Input("positive", tooltip="From a DynamiCrafter conditioning node."),
                io.Conditioning.Input("negative", tooltip="From the same DynamiCrafter conditioning node."),
                io.Float.Input("cfg", default=7.5, min=1.0, max=30.0, step=0.1,
                               tooltip="Text guidance: how strongly the prompt steers the video."),
                io.Float.Input("image_cfg", default=7.5, min=0.0, max=30.0, step=0.1,
                               tooltip="Image guidance: how strongly the picture steers it. Equal to cfg = the "
                                       "usual single scale; lower = freer motion, higher = closer to the picture."),
                io.Float.Input("guidance_rescale", default=-1.0, min=-1.0, max=1.0, step=0.05,
                               tooltip="-1 = the model's default (0.7 for 512/1024/interp, 0 for 256)."),
            ],
            outputs=[io.Guider.Output()],
        )

    @classmethod
    def validate_inputs(cls, cfg: float | None = None, image_cfg: float | None = None,
                        guidance_rescale: float | None = None) -> bool | str:
        return (number_problem("cfg", cfg, 1.0, 30.0) or number_problem("image_cfg", image_cfg, 0.0, 30.0)
                or number_problem("guidance_rescale", guidance_rescale, -1.0, 1.0) or True)

    @classmethod
    def execute(cls, model, positive, negative, cfg, image_cfg, guidance_rescale) -> io.NodeOutput:
        return io.NodeOutput(dynamicrafter_guider(model, positive, negative, cfg, image_cfg,
                                                  _rescale_value(model, guidance_rescale),
                                                  _variant(model).schedule.prediction))


NODES = [DynamiCrafterSampler, DynamiCrafterDDIMSampler, DynamiCrafterScheduler, DynamiCrafterGuidanceRescale,
         DynamiCrafterImageGuider]
