"""The workflows of the sampler controls: a video restyled by partial denoise, a first frame pinned exactly, and
the prompt's and the picture's guidance apart (SamplerCustomAdvanced)."""

from __future__ import annotations

from dataclasses import replace

from ..builders import (
    FRAMES,
    I2V_PROMPT,
    RESTYLE_PICTURE,
    SOURCE_VIDEO_FILE,
    START_PICTURE,
    i2v_conditioning,
    loader,
    picture,
    prompts,
    sampler,
    vae_decode,
    variant,
    video_out,
)
from ..graph import (
    CLIP_FRAMES,
    CONDITIONING,
    DDIM,
    DECODE,
    ENCODE,
    FIT,
    GUIDER,
    IMAGE,
    LOADER,
    NOISE,
    PIN,
    REPEAT,
    SAMPLER,
    SCHEDULER,
    SOURCE_VIDEO,
    VIDEO_PARTS,
    Link,
    Node,
    Workflow,
    sorted_nodes,
)

RESTYLE_DENOISE = 0.6
RESTYLE_PROMPT = "the same sunset at the blue hour, cold moonlight on a calm sea, gentle waves, clouds drifting"
RESTYLE_PROMPT_HELP = (
    "the new video in words: its look, the light, what moves and how. DynamiCrafter follows the picture more "
    "than the prompt: say what the picture shows in its new look."
)
RESTYLE_NOTE = (
    "## Video to video\n"
    f"{FRAMES} frames of the video (*batch_index* picks where they start) are fitted to the video size, encoded by "
    "the VAE and given to the sampler as its start latent; its `denoise` sets how much of them is made anew: "
    f"{RESTYLE_DENOISE} keeps the layout and the motion of the video and changes the look, 1 ignores the video, "
    "0 returns it unchanged. The run starts part-way down the original noise schedule with the same number of "
    "steps, so it takes as long as a full run. DynamiCrafter follows its picture closely and its prompt "
    "loosely: the look comes mainly from the picture on the conditioning node, the video's first frame in the "
    "new look (the example is the video's first frame at the blue hour; for your video, restyle its first frame "
    "with an image model or editor). The example video is in this pack's `workflows/inputs` folder "
    f"(`{SOURCE_VIDEO_FILE}`): copy it into `ComfyUI/input` with the pictures. The model makes {FRAMES} frames "
    "meant to play at 8 per second: pick a stretch of about 2 s of your video, or set *fps* of *Make video* to your "
    "video's rate to keep its speed."
)
PIN_NOTE = (
    "## Pinned first frame\n"
    "The picture is fitted to the video size, encoded once by the VAE and repeated for every frame; *Pin Frames* "
    "marks frame 0 as kept (a noise mask) and the sampler makes the other frames from noise around it. The "
    "sampled video's first frame comes back as the picture's latent, bit for bit, so the decoded first frame is "
    "the picture as the VAE reproduces it; without pinning the model makes frame 0 itself, and it can differ a "
    "little from the picture in colour and detail. It costs one VAE encode and no extra steps (the sampler still "
    "computes the pinned frame and then puts the kept one back), but the model can no longer adjust frame 0 to "
    "the frames after it. `pin` takes any set (`0, -1` = first and last, given a latent whose last frame is "
    "your end picture); the stock *Set Latent Noise Mask* with a per-frame mask does the same."
)

IMAGE_CFG = 5.0
GUIDANCE_NOTE = (
    "## Separate image guidance\n"
    "The original's multi-condition guidance (its `--multiple_cond_cfg --cfg_img`): *cfg* of the guider sets how "
    "strongly the prompt steers the video, *image_cfg* how strongly the picture does. Equal scales are the usual "
    f"single-scale guidance; a lower *image_cfg* ({IMAGE_CFG} here) loosens the picture's hold for freer motion, a "
    "higher one keeps the video closer to the picture. Each step runs the model three times instead of twice. "
    "The Sampler of the other workflows has the same *image_cfg*; here the pieces are apart for the stock "
    "*SamplerCustomAdvanced*: the DynamiCrafter DDIM Sampler and Scheduler give the original's steps, and a stock "
    "sampler (*KSamplerSelect*) or scheduler may take their place."
)


def fit_to_video(image: Link, title: str, pos: tuple[int, int], width: int, height: int) -> Node:
    """The stock resize with the conditioning node's size and centre crop, so the start latent fits the video."""
    return Node(
        FIT,
        "ImageScale",
        title,
        pos,
        (270, 130),
        {"upscale_method": "lanczos", "width": width, "height": height, "crop": "center"},
        {"image": image},
    )


def encode(pixels: Link, title: str, pos: tuple[int, int], size: tuple[int, int]) -> Node:
    return Node(ENCODE, "VAEEncode", title, pos, size, {}, {"pixels": pixels, "vae": (LOADER, 2)})


def video_restyle() -> Workflow:
    row = variant("512")
    look = replace(
        picture(IMAGE, "Picture in the new look (the first frame, restyled)", RESTYLE_PICTURE, 200),
        help={
            "image": "the look of the new video: the video's first frame, restyled (here at the blue hour), from "
            "ComfyUI's `input` folder. Any size works: it is fitted to the video size."
        },
    )
    nodes = [
        loader(row),
        *prompts(RESTYLE_PROMPT, RESTYLE_PROMPT_HELP),
        look,
        Node(SOURCE_VIDEO, "LoadVideo", "Video to restyle", (0, 600), (380, 400), {"file": SOURCE_VIDEO_FILE}),
        Node(
            VIDEO_PARTS, "GetVideoComponents", "Video frames", (430, 400), (220, 70), {}, {"video": (SOURCE_VIDEO, 0)}
        ),
        Node(
            CLIP_FRAMES,
            "ImageFromBatch",
            f"{FRAMES} frames of the video",
            (430, 520),
            (270, 82),
            {"batch_index": 0, "length": FRAMES},
            {"image": (VIDEO_PARTS, 0)},
            help={
                "batch_index": "the video frame the clip starts at (0 = the first).",
                "length": f"how many frames: the conditioning node's frames ({FRAMES}, what the models were trained "
                "on).",
            },
        ),
        fit_to_video((CLIP_FRAMES, 0), "Fit the frames to the video size", (430, 650), row.width, row.height),
        encode((FIT, 0), "Encode the frames (start latent)", (900, 380), (270, 50)),
        i2v_conditioning(row),
        replace(sampler(), links={**sampler().links, "latent": (ENCODE, 0)}, widgets={"denoise": RESTYLE_DENOISE}),
        vae_decode(),
        *video_out((DECODE, 0), "DynamiCrafter/restyle_512"),
    ]
    return Workflow(
        name="video_restyle_512",
        title="DynamiCrafter 512: video to video (restyle)",
        about=(
            f"Remakes {FRAMES} frames of an existing video ({row.width}x{row.height}) in the look of a picture and "
            f"a new prompt: the video's frames are the sampler's start latent and denoise {RESTYLE_DENOISE} keeps "
            "their layout and motion."
        ),
        nodes=sorted_nodes(nodes),
        pictures=(START_PICTURE, RESTYLE_PICTURE),
        extra_notes=(RESTYLE_NOTE,),
    )


def pinned_first_frame() -> Workflow:
    row = variant("512")
    nodes = [
        loader(row),
        *prompts(I2V_PROMPT),
        picture(IMAGE, "Picture to animate (kept as frame 0)", START_PICTURE, 200),
        fit_to_video((IMAGE, 0), "Fit the picture to the video size", (430, 400), row.width, row.height),
        encode((FIT, 0), "Encode the picture", (430, 570), (220, 50)),
        Node(
            REPEAT,
            "RepeatLatentBatch",
            "One latent per frame",
            (430, 660),
            (270, 60),
            {"amount": FRAMES},
            {"samples": (ENCODE, 0)},
        ),
        Node(PIN, "DynamiCrafterPinFrames", "Pin the first frame", (900, 380), (340, 110), {}, {"latent": (REPEAT, 0)}),
        replace(i2v_conditioning(row), links={**i2v_conditioning(row).links, "image": (FIT, 0)}),
        replace(sampler(), links={**sampler().links, "latent": (PIN, 0)}),
        vae_decode(),
        *video_out((DECODE, 0), "DynamiCrafter/pinned_512"),
    ]
    return Workflow(
        name="pinned_first_frame_512",
        title="DynamiCrafter 512: image to video with the first frame pinned",
        about=(
            f"Animates one picture into a {FRAMES}-frame, {row.width}x{row.height} video whose first frame is the "
            "picture's own latent, kept exactly while the sampler makes the other frames (Pin Frames)."
        ),
        nodes=sorted_nodes(nodes),
        pictures=(START_PICTURE,),
        extra_notes=(PIN_NOTE,),
    )


def image_guidance() -> Workflow:
    row = variant("512")
    conditioning = {"positive": (CONDITIONING, 0), "negative": (CONDITIONING, 1)}
    nodes = [
        loader(row),
        *prompts(I2V_PROMPT),
        picture(IMAGE, "Picture to animate", START_PICTURE, 200),
        i2v_conditioning(row),
        Node(NOISE, "RandomNoise", "Start noise", (900, 380), (340, 110), {"noise_seed": 123}),
        Node(
            DDIM,
            "DynamiCrafterDDIMSampler",
            "DynamiCrafter DDIM Sampler",
            (900, 530),
            (340, 110),
            {},
            {"model": (LOADER, 0)},
        ),
        Node(
            SCHEDULER,
            "DynamiCrafterScheduler",
            "DynamiCrafter Scheduler",
            (900, 680),
            (340, 150),
            {},
            {"model": (LOADER, 0)},
        ),
        Node(
            GUIDER,
            "DynamiCrafterImageGuider",
            "DynamiCrafter Text + Image Guider",
            (1290, 0),
            (340, 200),
            {"image_cfg": IMAGE_CFG},
            {"model": (LOADER, 0), **conditioning},
        ),
        Node(
            SAMPLER,
            "SamplerCustomAdvanced",
            "SamplerCustomAdvanced",
            (1290, 260),
            (340, 130),
            {},
            {
                "noise": (NOISE, 0),
                "guider": (GUIDER, 0),
                "sampler": (DDIM, 0),
                "sigmas": (SCHEDULER, 0),
                "latent_image": (CONDITIONING, 2),
            },
        ),
        vae_decode(),
        *video_out((DECODE, 0), "DynamiCrafter/image_guidance_512"),
    ]
    return Workflow(
        name="image_guidance_512",
        title="DynamiCrafter 512: image to video with the prompt's and the picture's guidance apart",
        about=(
            f"Animates one picture into a {FRAMES}-frame, {row.width}x{row.height} video with the stock "
            "SamplerCustomAdvanced and the DynamiCrafter Text + Image Guider: one guidance scale for the prompt, "
            "another for the picture."
        ),
        nodes=sorted_nodes(nodes),
        extra_notes=(GUIDANCE_NOTE,),
    )
