"""How soon the director stops after Cancel while its request waits for a slow answer (prints figures).

Run from the repository root: ``python bench/director_cancel.py [runs]``. A fake OpenAI-compatible service on
127.0.0.1 holds each answer for 30 s; Cancel is pressed 0.3 s into the request; the figure is the time from
the press to the moment ``chat`` raised the cancel exception.
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import support.director_fakes as H
from director import client, waiting


class Cancelled(Exception):
    """Stands in for ComfyUI's InterruptProcessingException."""


def one_run(fake: H.FakeOpenAI) -> float:
    fake.replies.append(H.Reply(body=H.chat_body("too late"), delay=30.0))
    pressed: list[float] = []

    def press() -> None:
        pressed.append(time.monotonic())

    def abort_check() -> None:
        if pressed:
            raise Cancelled()

    threading.Timer(0.3, press).start()
    conn = client.DirectorConnection(base_url=fake.base_url, model="m", timeout_s=60.0)
    try:
        client.chat(conn, [{"role": "user", "content": "hi"}], abort_check=abort_check)
    except Cancelled:
        return time.monotonic() - pressed[0]
    raise RuntimeError("the request ended without Cancel")


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    started = time.monotonic()
    import openai  # noqa: F401  (the first import takes seconds; ComfyUI pays it once, on the first director run)

    print(f"first import of openai: {time.monotonic() - started:.2f} s (not counted below)")
    with H.FakeOpenAI() as fake:
        os.environ[H.HOSTS_ENV] = fake.host
        delays = [one_run(fake) for _ in range(runs)]
    print(
        f"cancel latency over {runs} runs: median {statistics.median(delays) * 1000:.0f} ms, "
        f"max {max(delays) * 1000:.0f} ms (poll interval {waiting.POLL_S * 1000:.0f} ms)"
    )


if __name__ == "__main__":
    main()
