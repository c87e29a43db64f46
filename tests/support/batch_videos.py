"""What the batch-client tests make and count: a test picture, the journal's records, complete videos a server
wrote per item, and frames of a video."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import av
import numpy as np
from PIL import Image

from dynamicrafter_batch.items import DEFAULT_PREFIX
from dynamicrafter_batch.journal import JOURNAL_NAME
from dynamicrafter_batch.outputs import is_complete


def journal_records(out: Path) -> list[dict]:
    """The records of the batch journal in ``out`` (none before it exists); a line a killed client was writing
    is skipped (the next client repairs it)."""
    path = out / JOURNAL_NAME
    records = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return records


def complete_videos(output_dir: Path) -> Counter:
    """Complete MP4s per item prefix under a server's output folder (a killed server may leave torn ones)."""
    counts: Counter = Counter()
    for path in (output_dir / DEFAULT_PREFIX).glob("*.mp4"):
        if is_complete(path.read_bytes(), "mp4"):
            counts[path.name.rsplit("_", 2)[0]] += 1
    return counts


def frame_count(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(container.streams.video[0]))


def picture(path: Path, colour: tuple[int, int, int] = (220, 120, 40)) -> Path:
    pixels = np.zeros((90, 160, 3), dtype=np.uint8)
    pixels[:, :80] = colour
    pixels[30:60, 100:140] = (40, 90, 230)
    Image.fromarray(pixels).save(path)
    return path


def assert_each_item_done_once(records: list[dict], out: Path, items: int, frames: int) -> None:
    """The journal's records say each of ``items`` items was done exactly once, and ``out`` holds their videos,
    each of ``frames`` frames."""
    done = Counter(r["item"] for r in records if r["event"] == "done")
    assert len(done) == items and set(done.values()) == {1}, "each item is done exactly once"
    videos = sorted(out.glob("*.mp4"))
    assert len(videos) == items and all(frame_count(v) == frames for v in videos)
