"""Connection to an OpenAI-compatible chat-completions endpoint: presets, key lookup, retries, errors.

The key never leaves this module: it is read from the environment variable the connection names at
call time (only one the admin allows, see ``policy``), handed to the ``openai`` client for the preset's host or
an allowed Custom host, and scrubbed in every written form from every message this module produces. Answers'
bodies are never copied into messages: a workflow must not be able to read a service through the error text.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import policy
from .errors import DirectorError
from .redact import scrub
from .waiting import TimedOut, WorkFailed, run_polling, sleep_polling

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Preset:
    """A known endpoint: its base URL, the usual key variable and a sensible vision model."""

    base_url: str
    key_env: str | None
    model: str


PRESETS: dict[str, Preset] = {
    "Gemini (OpenAI-compatible)": Preset(
        "https://generativelanguage.googleapis.com/v1beta/openai/", "GEMINI_API_KEY", "gemini-2.5-flash"
    ),
    "GitHub Models": Preset("https://models.github.ai/inference", "GITHUB_TOKEN", "openai/gpt-4.1-mini"),
    "OpenAI": Preset("https://api.openai.com/v1", "OPENAI_API_KEY", "gpt-4.1-mini"),
    "Ollama (local)": Preset("http://127.0.0.1:11434/v1", None, "qwen2.5vl"),
    "LM Studio (local)": Preset("http://127.0.0.1:1234/v1", None, "local-model"),
    "Custom": Preset("", None, ""),
}
CUSTOM = "Custom"

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# Prefixes of real keys, in the case the services write them: a long value starting like this was pasted into
# the variable-name field by mistake. Names are judged as names: HF_TOKEN, SK_SERVICE_KEY or gsk_name pass.
_KEY_PREFIXES = ("sk-", "sk_", "ghp_", "gho_", "ghu_", "ghs_", "github_pat_", "AIza", "gsk_", "xai-", "hf_")
_SHORTEST_KEY = 20
"""Real keys with those prefixes are longer than this (hf_ 37, ghp_ 40, gsk_ 56 characters)."""
_NO_KEY_PLACEHOLDER = "not-needed"
_MAX_DELAY_S = 60.0
MAX_NODE_SECONDS = 300.0
"""One director request, all tries and waits together, ends within this (whatever timeout x retries say)."""


@dataclass(frozen=True)
class DirectorConnection:
    """Where and how to ask: everything but the key, which stays in the environment variable ``key_env``."""

    base_url: str
    model: str
    key_env: str | None = None
    timeout_s: float = 60.0
    max_retries: int = 3
    retry_delay_s: float = 1.0
    provider: str = CUSTOM

    @property
    def endpoint(self) -> str:
        """The chat-completions URL, as named in messages."""
        return self.base_url.rstrip("/") + "/chat/completions"

    def describe(self) -> str:
        key = f"key from ${self.key_env}" if self.key_env else "no key"
        return f"{self.model} at {self.endpoint} ({key})"


def check_env_name(name: str) -> str | None:
    """Return the cleaned variable name ('' or '-' = none), or raise without echoing a value that looks like a key."""
    name = name.strip().lstrip("$").strip()
    if name in ("", "-", "none", "None"):
        return None
    looks_like_key = (name.startswith(_KEY_PREFIXES) and len(name) >= _SHORTEST_KEY) or (
        len(name) >= 24 and any(c.islower() for c in name) and any(c.isdigit() for c in name)
    )
    if looks_like_key or not _ENV_NAME.match(name):
        raise DirectorError(
            "the key variable field must hold the NAME of an environment variable (e.g. GEMINI_API_KEY), "
            "not the key itself: set the variable to your key before starting ComfyUI and put its name here "
            "(if you pasted a key into the workflow, remove it and consider revoking that key)"
        )
    return name


def make_connection(
    provider: str,
    model: str = "",
    key_env: str = "",
    custom_url: str = "",
    timeout_s: float = 60.0,
    max_retries: int = 3,
    retry_delay_s: float = 1.0,
) -> DirectorConnection:
    """Resolve a preset plus overrides into a connection; empty fields take the preset's default.

    Refuses a key variable or Custom host the server admin does not allow (see ``policy``)."""
    if provider not in PRESETS:
        raise DirectorError(f"unknown provider '{provider}': choose one of {', '.join(PRESETS)}")
    preset = PRESETS[provider]
    base_url = custom_url.strip() if provider == CUSTOM else preset.base_url
    if provider == CUSTOM and not base_url:
        raise DirectorError("provider 'Custom' needs a base URL, e.g. http://127.0.0.1:8080/v1")
    model = model.strip() or preset.model
    if not model:
        raise DirectorError("no model name given for the Custom provider: type the model the server serves")
    env = check_env_name(key_env) if key_env.strip() else preset.key_env
    conn = DirectorConnection(
        base_url=base_url,
        model=model,
        key_env=env,
        timeout_s=float(timeout_s),
        max_retries=max(0, int(max_retries)),
        retry_delay_s=max(0.0, float(retry_delay_s)),
        provider=provider,
    )
    authorize(conn)
    return conn


def authorize(conn: DirectorConnection) -> None:
    """Refuse a connection whose host or key variable the admin does not allow (checked again before each request)."""
    preset = PRESETS.get(conn.provider)
    if preset is None:
        raise DirectorError(f"unknown provider '{conn.provider}': choose one of {', '.join(PRESETS)}")
    if conn.key_env:
        policy.check_key_var(conn.key_env, preset.key_env, conn.provider)
    if conn.provider == CUSTOM:
        policy.check_custom_url(conn.base_url)
    elif conn.base_url != preset.base_url:
        raise DirectorError(f"provider '{conn.provider}' asks only {preset.base_url}: use Custom for other URLs")


def _openai() -> Any:
    try:
        import openai
    except ImportError:
        raise DirectorError(
            "the AI director nodes need the 'openai' package: run `pip install openai` in the Python "
            "environment that runs ComfyUI, then restart ComfyUI"
        ) from None
    return openai


def _read_key(conn: DirectorConnection) -> str | None:
    if not conn.key_env:
        return None
    key = os.environ.get(conn.key_env, "").strip()
    if not key:
        raise DirectorError(
            f"environment variable ${conn.key_env} is not set (or empty): set it to your key for "
            f"{conn.endpoint} and restart ComfyUI"
        )
    if not all("!" <= c <= "~" for c in key):
        raise DirectorError(
            f"the value of ${conn.key_env} cannot be sent as a key: it holds spaces, line breaks or characters "
            "outside ASCII; set the variable to the key alone and restart ComfyUI"
        )
    return key


def _retry_after(exc: Any) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _status_error(conn: DirectorConnection, status: int, tries: int) -> DirectorError:
    url = conn.endpoint
    if status in (401, 403):
        if conn.key_env:
            text = f"the key in ${conn.key_env} was rejected by {url}: HTTP {status}"
        else:
            text = (
                f"{url} refused the request without a key: HTTP {status}; name the environment "
                "variable that holds the key in the connection node"
            )
    elif 300 <= status < 400:
        text = f"{url} answered with a redirect (HTTP {status}), which is not followed: use the final URL"
    elif status == 404:
        text = f"{url} answered HTTP 404: check the base URL and that model '{conn.model}' exists there"
    elif status == 429:
        text = (
            f"{url} kept answering HTTP 429 (rate limit or quota) after {tries} tries: wait a "
            "moment, raise the retries, or check your plan's quota"
        )
    elif status >= 500:
        text = f"{url} failed with HTTP {status} after {tries} tries: the service has trouble, try later"
    else:
        text = f"{url} rejected the request: HTTP {status} (does model '{conn.model}' accept images and these options?)"
    return DirectorError(text)


class _Retry(Exception):
    """This try failed in a way worth another try; ``error`` is what to report when no try is left."""

    def __init__(self, error: DirectorError, delay: float) -> None:
        super().__init__(str(error))
        self.error = error
        self.delay = delay


def chat(
    conn: DirectorConnection,
    messages: list[dict[str, Any]],
    *,
    temperature: float = 0.0,
    seed: int | None = None,
    abort_check: Callable[[], None] | None = None,
    sleep: Callable[[float], None] | None = None,
) -> str:
    """Send one chat-completions request and return the answer text.

    Retries 429, 5xx, timeouts and connection failures with exponential backoff
    (``retry_delay_s * 2**attempt``, or the server's Retry-After when longer, at most 60 s).
    A 400 while a seed was sent is tried once more without the seed, for servers that do not take one.
    ``abort_check`` (ComfyUI's Cancel) is polled while waiting for an answer and between tries and may raise
    to stop; everything together ends within ``MAX_NODE_SECONDS``. Every failure is a DirectorError without
    any form of the key and without the answer's body. ``sleep`` replaces the wait between tries (tests).
    """
    openai = _openai()
    authorize(conn)
    key = _read_key(conn)
    try:
        return _ask(openai, conn, key, messages, temperature, seed, abort_check, sleep)
    except DirectorError as exc:
        raise DirectorError(scrub(str(exc), key)) from None


def _ask(
    openai: Any,
    conn: DirectorConnection,
    key: str | None,
    messages: list[dict[str, Any]],
    temperature: float,
    seed: int | None,
    abort_check: Callable[[], None] | None,
    sleep: Callable[[float], None] | None,
) -> str:
    try:
        client = openai.OpenAI(
            api_key=key or _NO_KEY_PLACEHOLDER,
            base_url=conn.base_url,
            timeout=conn.timeout_s,
            max_retries=0,
            http_client=openai.DefaultHttpxClient(follow_redirects=False),
        )
    except Exception as exc:  # noqa: BLE001  (a broken install or TLS setup: say so, without the details)
        raise DirectorError(
            f"cannot set up the HTTP client for {conn.endpoint} ({type(exc).__name__}): check "
            "the `openai` install of the Python that runs ComfyUI"
        ) from None
    request: dict[str, Any] = {"model": conn.model, "messages": messages, "temperature": float(temperature)}
    if seed is not None:
        request["seed"] = int(seed)
    deadline = time.monotonic() + MAX_NODE_SECONDS
    attempts = 1 + conn.max_retries
    tries = 0
    try:
        while True:
            if abort_check is not None:
                abort_check()
            left = deadline - time.monotonic()
            if left <= 0:
                raise DirectorError(
                    f"no answer from {conn.endpoint} within the director's limit of "
                    f"{MAX_NODE_SECONDS:g} s per node (tried {tries} times): lower the timeout "
                    "or the retries, or check the server"
                )
            tries += 1
            log.info("director: asking %s (try %d of %d)", conn.describe(), tries, attempts)
            try:
                response = run_polling(
                    lambda: client.chat.completions.create(**request), min(conn.timeout_s, left), abort_check
                )
            except (TimedOut, WorkFailed) as failure:
                outcome = _outcome(openai, conn, key, failure, tries, request)
                if outcome is None:  # the seed was dropped: the same try again
                    tries -= 1
                    continue
                if tries >= attempts:
                    raise outcome.error from None
                delay = min(outcome.delay, _MAX_DELAY_S, max(0.0, deadline - time.monotonic()))
            else:
                return _answer_text(conn, response)
            log.info("director: %s is busy or unreachable; retrying in %.2f s", conn.endpoint, delay)
            if sleep is not None:
                sleep(delay)
            else:
                sleep_polling(delay, abort_check)
    finally:
        client.close()


def _outcome(
    openai: Any, conn: DirectorConnection, key: str | None, failure: Exception, tries: int, request: dict[str, Any]
) -> _Retry | None:
    """What a failed try means: None = try again at once without the seed; a _Retry = try later;
    raises the DirectorError to report when it is not worth another try."""
    url = conn.endpoint
    backoff = conn.retry_delay_s * 2 ** (tries - 1)
    if isinstance(failure, TimedOut):
        log.debug("director: no answer from %s within %s s", url, conn.timeout_s)
        return _Retry(
            DirectorError(
                f"no answer from {url} within {conn.timeout_s:g} s (tried {tries} times): "
                "raise the timeout or check the server"
            ),
            backoff,
        )
    exc = failure.error if isinstance(failure, WorkFailed) else failure
    if isinstance(exc, openai.APIStatusError):
        status = int(exc.status_code)
        log.debug("director: HTTP %d from %s (its body is not logged)", status, url)
        if status == 400 and "seed" in request:
            log.info("director: %s refused the request with a seed; trying again without it", url)
            request.pop("seed")
            return None
        if status == 429 or status >= 500:
            retry_after = _retry_after(exc)
            return _Retry(_status_error(conn, status, tries), max(backoff, retry_after or 0.0))
        raise _status_error(conn, status, tries)
    if isinstance(exc, openai.APITimeoutError):
        return _outcome(openai, conn, key, TimedOut(), tries, request)
    if isinstance(exc, openai.APIConnectionError):
        reason = type(exc.__cause__ or exc).__name__
        log.debug("director: cannot reach %s: %s", url, scrub(str(exc.__cause__ or exc), key)[:200])
        return _Retry(
            DirectorError(
                f"cannot reach {url} (tried {tries} times, {reason}): is the server running and the URL right?"
            ),
            backoff,
        )
    if isinstance(exc, DirectorError):
        raise exc
    log.debug("director: unexpected %s from the request to %s", type(exc).__name__, url)
    raise DirectorError(
        f"the request to {url} failed unexpectedly ({type(exc).__name__}): check the base URL "
        "and that the server speaks the OpenAI chat-completions API"
    )


def _answer_text(conn: DirectorConnection, response: Any) -> str:
    """The answer's text; a DirectorError (never the body) for anything that is not a chat-completions answer."""
    try:
        return _read_answer(conn, response)
    except DirectorError:
        raise
    except Exception as exc:  # noqa: BLE001  (an odd answer shape: attribute, index or type errors)
        log.debug("director: unreadable answer from %s (%s)", conn.endpoint, type(exc).__name__)
        raise DirectorError(
            f"{conn.endpoint} sent an answer that is not a chat-completions answer: check the "
            "base URL (it usually ends in /v1) and the model"
        ) from None


def _read_answer(conn: DirectorConnection, response: Any) -> str:
    if isinstance(response, (str, bytes)):  # the client hands back bodies that are not JSON as they are
        text = response.decode("utf-8", "replace") if isinstance(response, bytes) else response
        log.debug("director: %s answered %d characters that are not JSON", conn.endpoint, len(text))
        raise DirectorError(
            f"{conn.endpoint} did not answer like a chat-completions API (the answer is not JSON; "
            "it is not shown): check the base URL (it usually ends in /v1)"
        )
    choices = getattr(response, "choices", None) or []
    if not choices:
        raise DirectorError(f"{conn.endpoint} returned no answer (no choices in the response)")
    message = choices[0].message
    content = getattr(message, "content", None)
    if isinstance(content, list):  # some servers return content parts
        content = "".join(part.get("text", "") if isinstance(part, dict) else str(part) for part in content)
    if not content or not str(content).strip():
        reason = getattr(choices[0], "finish_reason", None)
        raise DirectorError(
            f"{conn.endpoint} returned an empty answer (finish reason: {reason}); "
            f"does model '{conn.model}' accept images?"
        )
    return str(content).strip()
