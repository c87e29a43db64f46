"""The host's encoders built at the sizes a file has: the released files' sizes give the host's own configs.

``nodes/adapter/encoders.py`` reads each OpenCLIP tower's sizes from its weights. For the released checkpoints
(meta tensors of the manifests) that must give exactly the host's SD 2.x text config and its ViT-H/14 CLIP
vision config, so a released file builds the same models as the host's stock path; a narrower file (the
test checkpoints) builds a narrower tower of the same kind.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dynamicrafter.checkpoint import PART_PREFIXES
from dynamicrafter.fixtures.demo import demo_state_dict
from support.host_checkpoints import HOST_SIZES
from support.reference_data import manifest_path

pytestmark = pytest.mark.host


@pytest.fixture(scope="module")
def encoders(comfy_host):
    return comfy_host.import_pack_module("nodes.adapter.encoders")


def _part(keys: dict[str, list[int]], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: torch.empty(shape, device="meta") for k, shape in keys.items() if k.startswith(prefix)}


@pytest.mark.parametrize("variant", ["256", "512", "1024", "512_interp"])
def test_released_sizes_are_the_hosts_configs(comfy_host, encoders, variant):
    import comfy.clip_vision
    import comfy.text_encoders.sd2_clip

    keys = json.loads(manifest_path(variant).read_text())["keys"]
    text_config = json.loads((Path(comfy.text_encoders.sd2_clip.__file__).parent / "sd2_clip_config.json").read_text())
    sizes = encoders.text_tower_sizes(_part(keys, PART_PREFIXES["text_encoder"]))
    assert sizes == {k: text_config[k] for k in sizes}
    vision_config = json.loads(Path(comfy.clip_vision.__file__).with_name("clip_vision_config_h.json").read_text())
    visual = {k: v for k, v in _part(keys, PART_PREFIXES["clip_vision"]).items() if k.startswith("model.visual.")}
    assert encoders.vision_tower_config(visual) == vision_config


def test_narrow_towers_build_narrow_models_with_the_real_token_counts(comfy_host, encoders):
    sd = demo_state_dict("512", embedder_text_leftovers=True, sizes=HOST_SIZES)
    text = encoders.text_encoder_from_state_dict(
        {
            k[len(PART_PREFIXES["text_encoder"]) :]: v
            for k, v in sd.items()
            if k.startswith(PART_PREFIXES["text_encoder"])
        },
        model_options={"dtype": torch.float32},
    )
    tokens = text.encode_from_tokens(text.tokenize("a boat"), return_pooled=False)
    assert tuple(tokens.shape) == (1, 77, HOST_SIZES.text["width"])
    vision = encoders.clip_vision_from_state_dict(
        {k[len(PART_PREFIXES["clip_vision"]) :]: v for k, v in sd.items() if k.startswith(PART_PREFIXES["clip_vision"])}
    )
    image_tokens = encoders.image_tokens(vision, torch.rand(1, 64, 96, 3))
    assert tuple(image_tokens.shape) == (1, 257, HOST_SIZES.vision["width"])


def test_a_vision_tower_of_another_token_count_is_refused(comfy_host, encoders):
    sd = demo_state_dict("512", embedder_text_leftovers=True, sizes=HOST_SIZES)
    visual = {
        k[len(PART_PREFIXES["clip_vision"]) :]: v for k, v in sd.items() if k.startswith(PART_PREFIXES["clip_vision"])
    }
    visual["model.visual.positional_embedding"] = visual["model.visual.positional_embedding"][:50]
    with pytest.raises(ValueError, match="257 tokens"):
        encoders.clip_vision_from_state_dict(visual)
