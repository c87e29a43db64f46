"""The batch client's upload (dynamicrafter_batch/http_client.py) against a stand-in server on 127.0.0.1: the server's
``--max-upload-size`` is read from ``/system_stats`` and a larger picture is refused before anything is sent;
a picture within it is streamed from the checked file."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web
from PIL import Image

from dynamicrafter_batch import files as batch_files
from dynamicrafter_batch import http_client as batch_http


def _noise(path: Path, side: int) -> Path:
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (side, side, 3), dtype=np.uint8)).save(path)
    return path


async def _upload(argv: list[str], upload: batch_files.Upload) -> tuple[list[int], object]:
    received: list[int] = []

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"system": {"argv": argv}})

    async def take(request: web.Request) -> web.Response:
        form = await request.post()
        received.append(len(form["image"].file.read()))
        return web.json_response({"name": form["image"].filename, "subfolder": ""})

    app = web.Application(client_max_size=64 << 20)
    app.add_routes([web.get("/system_stats", stats), web.post("/upload/image", take)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        async with batch_http.ComfyClient(f"http://127.0.0.1:{port}", "test") as client:
            try:
                return received, await client.upload(upload, "dcbatch_x.png")
            except batch_http.ItemError as error:
                return received, error
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("argv", [["main.py", "--max-upload-size", "0.05"], ["main.py", "--max-upload-size=0.05"]])
def test_a_picture_over_the_servers_limit_is_refused_before_sending(tmp_path, argv):
    upload = batch_files.check_picture(_noise(tmp_path / "big.png", 200), tmp_path)  # about 120 KB of noise
    assert upload.size > 0.05 * 2**20
    received, outcome = asyncio.run(_upload(argv, upload))
    assert isinstance(outcome, batch_http.ItemError) and received == [], "nothing was sent"
    assert "takes uploads up to 0.05 MiB (its --max-upload-size)" in str(outcome)


def test_a_picture_within_the_limit_is_streamed_whole(tmp_path):
    upload = batch_files.check_picture(_noise(tmp_path / "small.png", 60), tmp_path)
    received, outcome = asyncio.run(_upload(["main.py"], upload))  # ComfyUI's default: 100 MB
    assert outcome == "dcbatch_x.png" and received == [upload.size]
