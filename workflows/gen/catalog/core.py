"""The shipped workflows, each described once."""

from __future__ import annotations

from collections.abc import Callable

from ..builders import (
    END_PICTURE,
    FRAMES,
    I2V_PROMPT,
    MIDDLE_PICTURE,
    START_PICTURE,
    chain,
    director,
    i2v_conditioning,
    interp_conditioning,
    keyframes,
    loader,
    model_download,
    picture,
    prompts,
    sampler,
    soundtrack,
    vae_decode,
    variant,
    video_out,
    video_size,
)
from ..graph import (
    DECODE,
    DESCRIBE,
    DIRECTOR,
    END_IMAGE,
    IMAGE,
    LOADER,
    NEGATIVE,
    POSITIVE,
    SAMPLER,
    SOUNDTRACK,
    STORYBOARD,
    TRIM,
    Node,
    Workflow,
    sorted_nodes,
)
from .camera import camera_control
from .cil import cil_image_to_video
from .controls import image_guidance, pinned_first_frame, video_restyle
from .freenoise import long_video_freenoise
from .sketch import tooncrafter_sketch
from .stock import controlnet, lora
from .training import train_lora

KEYFRAME_SEGMENT_PROMPTS = (
    "the sun sinking toward the sea, clouds drifting\nthe sun touching the horizon, the sky turning deep orange"
)
DIRECTOR_NOTE = (
    "## AI director\n"
    "The *Director* nodes ask a vision-language model through any OpenAI-compatible service. Set your key in an "
    "environment variable before starting ComfyUI (e.g. `GEMINI_API_KEY`) and name that variable in "
    "*api_key_env*: the key itself is never stored in the workflow. Needs `pip install openai`. Put a few music "
    "files in ComfyUI's `input/music` folder (the soundtrack node's *folder* `music`); other folders must be "
    "listed by the server admin in `DYNAMICRAFTER_AUDIO_DIRS`. Custom URLs and other key variables must be "
    "allowed too (`DYNAMICRAFTER_DIRECTOR_HOSTS`, `DYNAMICRAFTER_DIRECTOR_KEYS`; see the README)."
)
KEYFRAMES = (START_PICTURE, MIDDLE_PICTURE, END_PICTURE)


def image_to_video(variant_name: str) -> Workflow:
    row = variant(variant_name)
    nodes = [
        loader(row),
        *prompts(I2V_PROMPT),
        picture(IMAGE, "Picture to animate", START_PICTURE, 200),
        i2v_conditioning(row),
        sampler(),
        vae_decode(),
        *video_out((DECODE, 0), f"DynamiCrafter/i2v_{row.name}"),
    ]
    return Workflow(
        name=f"image_to_video_{row.name}",
        title=f"DynamiCrafter {row.name}: image to video",
        about=(
            f"Animates one picture into a {FRAMES}-frame, {row.width}x{row.height} video guided by "
            f"the prompt, with the original {row.name} model and its settings."
        ),
        nodes=sorted_nodes(nodes),
    )


def interpolation() -> Workflow:
    row = variant("512_interp")
    nodes = [
        loader(row),
        *prompts("the sun slowly sinking into the sea, the sky turning deep orange"),
        picture(IMAGE, "Start picture", START_PICTURE, 200),
        picture(END_IMAGE, "End picture", END_PICTURE, 600),
        interp_conditioning(row, "interpolate"),
        sampler(),
        vae_decode(),
        *video_out((DECODE, 0), "DynamiCrafter/interpolation_512"),
    ]
    return Workflow(
        name="interpolation_512",
        title="DynamiCrafter 512: interpolation between two pictures",
        about=(
            f"Fills the {FRAMES - 2} frames between a start and an end picture ({row.width}x{row.height}) "
            "with the DynamiCrafter interpolation model."
        ),
        nodes=sorted_nodes(nodes),
    )


def loop() -> Workflow:
    row = variant("512_interp")
    nodes = [
        loader(row),
        *prompts("waves rippling on the sea at sunset, a gentle breeze, seamless loop"),
        picture(IMAGE, "Picture (first and last frame of the loop)", START_PICTURE, 200),
        interp_conditioning(row, "loop"),
        sampler(),
        vae_decode(),
        Node(
            TRIM,
            "ImageFromBatch",
            "Drop the repeated last frame",
            (1680, 100),
            (270, 82),
            {"batch_index": 0, "length": FRAMES - 1},
            {"image": (DECODE, 0)},
        ),
        *video_out((TRIM, 0), "DynamiCrafter/loop_512"),
    ]
    return Workflow(
        name="loop_512",
        title="DynamiCrafter 512: seamless loop",
        about=(
            f"Makes a looping {row.width}x{row.height} clip from one picture with the interpolation "
            f"model: the picture is the first and the last frame; the last is dropped so the "
            f"{FRAMES - 1}-frame clip repeats seamlessly."
        ),
        nodes=sorted_nodes(nodes),
    )


def keyframe_chain() -> Workflow:
    row = variant("512_interp")
    nodes = [
        loader(row),
        *prompts("the sun slowly sinking into the sea, the sky turning orange"),
        *keyframes(),
        chain(KEYFRAME_SEGMENT_PROMPTS),
        *video_out((SAMPLER, 0), "DynamiCrafter/keyframes_512"),
    ]
    return Workflow(
        name="keyframe_chain_512",
        title="DynamiCrafter 512: one video through three keyframes",
        about=(
            f"Interpolates keyframe 1 -> 2 -> 3 ({row.width}x{row.height}) with the interpolation model "
            f"in one run, one {FRAMES}-frame segment per pair, every keyframe shown once: "
            f"{2 * (FRAMES - 1) + 1} frames. Each line of *segment_prompts* steers one segment."
        ),
        nodes=sorted_nodes(nodes),
        pictures=KEYFRAMES,
        size=(row.width, row.height),
    )


def long_video() -> Workflow:
    row = variant("512")
    node = Node(
        SAMPLER,
        "DynamiCrafterLongVideo",
        "DynamiCrafter Long Video",
        (900, 0),
        (340, 560),
        {"total_frames": 40, "overlap": 4, **video_size(row), "clip_frames": FRAMES},
        {
            "model": (LOADER, 0),
            "positive": (POSITIVE, 0),
            "negative": (NEGATIVE, 0),
            "vae": (LOADER, 2),
            "clip_vision": (LOADER, 3),
            "image": (IMAGE, 0),
        },
    )
    nodes = [
        loader(row),
        *prompts(I2V_PROMPT),
        picture(IMAGE, "Picture to animate", START_PICTURE, 200),
        node,
        *video_out((SAMPLER, 0), "DynamiCrafter/long_512"),
    ]
    return Workflow(
        name="long_video_512",
        title="DynamiCrafter 512: long video from one picture",
        about=(
            f"Animates one picture into a 40-frame {row.width}x{row.height} video (5 s at 8 fps): "
            f"{FRAMES}-frame clips, each continuing the one before, joined by 4 crossfaded frames."
        ),
        nodes=sorted_nodes(nodes),
        pictures=(START_PICTURE,),
        size=(row.width, row.height),
    )


def tooncrafter() -> Workflow:
    row = variant("tooncrafter")
    toon_loader = Node(
        LOADER,
        "DynamiCrafterToonCrafterLoader",
        "Load ToonCrafter",
        (0, 0),
        (380, 130),
        {"ckpt_name": row.file_name},
        models=(model_download(row),),
    )
    conditioning = interp_conditioning(
        row,
        "interpolate",
        "DynamiCrafter Interpolate",
        help={
            "fs": f"motion control as frames per second; ToonCrafter's original scripts use {row.default_fs}.",
            "width": f"video width in pixels: {row.width} for ToonCrafter.",
            "height": f"video height in pixels: {row.height} for ToonCrafter.",
        },
    )
    decode = Node(
        DECODE,
        "DynamiCrafterToonCrafterDecode",
        "ToonCrafter decode",
        (1680, 0),
        (300, 200),
        {"frames": FRAMES},
        {
            "samples": (SAMPLER, 0),
            "tooncrafter_vae": (LOADER, 4),
            "start_image": (IMAGE, 0),
            "end_image": (END_IMAGE, 0),
        },
    )
    nodes = [
        toon_loader,
        *prompts("an anime scene, the sun sinking into the sea, clouds drifting"),
        picture(IMAGE, "Start picture", START_PICTURE, 200),
        picture(END_IMAGE, "End picture", END_PICTURE, 600),
        conditioning,
        sampler(),
        decode,
        *video_out((DECODE, 0), "DynamiCrafter/tooncrafter_512"),
    ]
    return Workflow(
        name="tooncrafter_512",
        title="ToonCrafter 512: cartoon interpolation between two pictures",
        about=(
            f"Fills the frames between a start and an end picture ({row.width}x{row.height}, {FRAMES} "
            "frames) with ToonCrafter: the interpolation UNet, then ToonCrafter's own decoder, which looks at "
            "both pictures again while decoding."
        ),
        nodes=sorted_nodes(nodes),
    )


def photo_to_film() -> Workflow:
    row = variant("512")
    describe = Node(
        DESCRIBE,
        "DynamiCrafterDirectorDescribeImage",
        "Director: describe the picture",
        (430, -420),
        (420, 260),
        {},
        {"director": (DIRECTOR, 0), "image": (IMAGE, 0)},
    )
    nodes = [
        loader(row),
        director(),
        describe,
        *prompts(
            None,
            "comes from the director's description of the picture (type your own prompt here "
            "instead by removing the link).",
        ),
        picture(IMAGE, "Picture to animate", START_PICTURE, 200),
        i2v_conditioning(row),
        sampler(),
        vae_decode(),
        soundtrack((DESCRIBE, 0), (DECODE, 0)),
        *video_out((DECODE, 0), "DynamiCrafter/photo_to_film", audio=(SOUNDTRACK, 0)),
    ]
    return Workflow(
        name="photo_to_film",
        title="DynamiCrafter 512: photo to film with music (AI director)",
        about=(
            f"An AI model describes the picture as a motion prompt, DynamiCrafter 512 animates it "
            f"({FRAMES} frames, {row.width}x{row.height}), and the AI picks a track from your music "
            "folder, cut to the clip's length."
        ),
        nodes=sorted_nodes(nodes),
        extra_notes=(DIRECTOR_NOTE,),
    )


def story_to_film() -> Workflow:
    row = variant("512_interp")
    storyboard = Node(
        STORYBOARD,
        "DynamiCrafterDirectorStoryboard",
        "Director: story to scene prompts",
        (430, -420),
        (420, 300),
        {"story": "The sun sets over a quiet sea. It sinks to the horizon and the sky burns orange.", "scenes": 2},
        {"director": (DIRECTOR, 0)},
        help={"scenes": "how many scenes to plan: one per segment of the keyframe chain (keyframes - 1)."},
    )
    nodes = [
        loader(row),
        director(),
        storyboard,
        *prompts("a calm sea at sunset"),
        *keyframes(),
        chain((STORYBOARD, 0)),
        soundtrack((STORYBOARD, 0), (SAMPLER, 0)),
        *video_out((SAMPLER, 0), "DynamiCrafter/story_to_film", audio=(SOUNDTRACK, 0)),
    ]
    return Workflow(
        name="story_to_film",
        title="DynamiCrafter 512: story to film through keyframes, with music (AI director)",
        about=(
            f"An AI model splits the story into one scene prompt per segment (scenes = keyframes - 1), the "
            f"keyframe chain interpolates keyframe 1 -> 2 -> 3 with them ({2 * (FRAMES - 1) + 1} frames, "
            f"{row.width}x{row.height}), and the AI picks a track from your music folder."
        ),
        nodes=sorted_nodes(nodes),
        pictures=KEYFRAMES,
        size=(row.width, row.height),
        extra_notes=(DIRECTOR_NOTE,),
    )


WORKFLOWS: tuple[Callable[[], Workflow], ...] = (
    lambda: image_to_video("256"),
    lambda: image_to_video("512"),
    lambda: image_to_video("1024"),
    controlnet,
    lora,
    interpolation,
    loop,
    keyframe_chain,
    long_video,
    long_video_freenoise,
    tooncrafter,
    lambda: tooncrafter_sketch(tooncrafter()),
    photo_to_film,
    story_to_film,
    video_restyle,
    pinned_first_frame,
    image_guidance,
    cil_image_to_video,
    train_lora,
    lambda: camera_control("256"),
    lambda: camera_control("512"),
)


def workflows() -> list[Workflow]:
    return [make() for make in WORKFLOWS]
