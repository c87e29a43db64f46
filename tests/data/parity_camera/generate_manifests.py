"""Key/shape manifests of the released camera checkpoints, derived from the CamI2V reference configs.

Runs only in the throwaway environment of ``generate_with_original.py`` (never imported by the tests):

    python generate_manifests.py --original <CamI2V checkout> --stubs <torchvision/open3d stand-ins>

Each model class is built from its inference yaml, its sub-networks on the meta device (schedule buffers on
CPU). The text and image encoders
(``cond_stage_config``, ``img_cond_stage_config``) are swapped for ``torch.nn.Identity`` (open_clip is not
installed); their keys are those of the base DynamiCrafter 256 manifest, whose config they share, and every
other non-camera key is checked against that manifest too.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
MANIFESTS = HERE.parent / "checkpoint_manifests"
COMMIT = "c5d7b2f"
RELEASES = {  # manifest name -> (yaml, released file on MuteApo/CamI2V, base manifest)
    "camera_motionctrl_256": ("configs/inference/001_motionctrl_256x256.yaml", "256_motionctrl.pt", "256"),
    "camera_cameractrl_256": ("configs/inference/002_cameractrl_256x256.yaml", "256_cameractrl.pt", "256"),
    "camera_cami2v_256": ("configs/inference/003_cami2v_256x256.yaml", "256_cami2v.pt", "256"),
    "camera_cami2v_512": ("configs/inference/003_cami2v_512x320.yaml", "512_cami2v_50k.pt", "512"),
    "camera_realcam_256": ("configs/inference/004_realcam-i2v_256x256.yaml", "256_realcam-i2v_50k.safetensors", "256"),
    "camera_realcam_512": ("configs/inference/004_realcam-i2v_512x320.yaml", "512_realcam-i2v_50k.safetensors", "512"),
}
"""RealCam-I2V: built without its depth predictor (Depth Anything v2 loads its own file; the pack does not run it)."""
ENCODERS = ("cond_stage_model.", "embedder.")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--original", type=Path, required=True)
    parser.add_argument("--stubs", type=Path, required=True)
    args = parser.parse_args()
    import pytorch_lightning  # noqa: F401  (first: it probes for the real torchvision)

    sys.path[:0] = [str(args.stubs), str(args.original)]
    from lvdm.models import ddpm3d
    from omegaconf import OmegaConf
    from utils.utils import instantiate_from_config

    def on_meta(sub_config, *rest, **kw):  # sub-networks on meta; the schedule buffers on CPU (numpy)
        with torch.device("meta"):
            return instantiate_from_config(sub_config, *rest, **kw)

    ddpm3d.instantiate_from_config = on_meta
    for name, (yaml, release, variant) in RELEASES.items():
        base = json.loads((MANIFESTS / f"dynamicrafter_{variant}.json").read_text())["keys"]
        config = OmegaConf.load(args.original / yaml).model
        config.params.cond_stage_config = {"target": "torch.nn.Identity"}
        config.params.img_cond_stage_config = {"target": "torch.nn.Identity"}
        config.params.unet_config.params.use_checkpoint = False
        config.params.pop("depth_predictor_config", None)
        model = instantiate_from_config(config)
        keys = {k: list(v.shape) for k, v in model.state_dict().items()}
        if variant == "256":  # the 256 file's name of the fs MLP
            keys = {k.replace("fps_embedding", "framestride_embed"): v for k, v in keys.items()}
        keys.update({k: v for k, v in base.items() if k.startswith(ENCODERS)})
        camera = {k: v for k, v in keys.items() if k not in base}
        for key, shape in keys.items():
            assert key in camera or base[key] == shape, (key, shape, base.get(key))
        assert set(base) <= set(keys), sorted(set(base) - set(keys))[:5]
        manifest = {
            "release": f"MuteApo/CamI2V: {release}",
            "source": f"ZGCTroy/CamI2V @ {COMMIT}, {yaml}: {config.target} instantiated on the meta device "
            f"(torch 2.13.0 CPU); encoders as in dynamicrafter_{variant}.json (open_clip not installed); base keys "
            f"checked equal to dynamicrafter_{variant}.json (names as there)",
            "note": "the keys and shapes the model class holds; whether the released file stores all of them or "
            "only the trained ones over the base checkpoint is not known without the file",
            "n_keys": len(keys),
            "camera_keys": camera,
            "keys": keys,
        }
        (MANIFESTS / f"{name}.json").write_text(json.dumps(manifest, indent=1) + "\n")
        print(name, len(keys), "keys,", len(camera), "camera keys")


if __name__ == "__main__":
    main()
