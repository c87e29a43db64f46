"""Connection to an OpenAI-compatible chat-completions endpoint: presets, key lookup, retries, errors.

The key never leaves this module: it is read from the environment variable the connection names at
call time, handed to the ``openai`` client, and scrubbed from every message this module produces.
"""
from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass
from typing import Any, Callable

from .errors import DirectorError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Preset:
    """A known endpoint: its base URL, the usual key variable and a sensible vision model."""

    base_url: str
    key_env: str | None
    model: str


PRESETS: dict[str, Preset] = {
    "Gemini (OpenAI-compatible)": Preset(
        "https://generativelanguage.googleapis.com/v1beta/openai/", "GEMINI_API_KEY", "gemini-2.5-flash"),
    "GitHub Models": Preset("https://models.github.ai/inference", "GITHUB_TOKEN", "openai/gpt-4.1-mini"),
    "OpenAI": Preset("https://api.openai.com/v1", "OPENAI_API_KEY", "gpt-4.1-mini"),
    "Ollama (local)": Preset("http://127.0.0.1:11434/v1", None, "qwen2.5vl"),
    "LM Studio (local)": Preset("http://127.0.0.1:1234/v1", None, "local-model"),
    "Custom": Preset("", None, ""),
}
CUSTOM = "Custom"

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# Prefixes of real keys: a value starting like this was pasted into the variable-name field by mistake.
_KEY_PREFIXES = ("sk-", "sk_", "ghp_", "gho_", "ghu_", "ghs_", "github_pat_", "aiza", "gsk_", "xai-", "hf_")
_NO_KEY_PLACEHOLDER = "not-needed"
_MAX_DELAY_S = 60.0


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
    looks_like_key = name.lower().startswith(_KEY_PREFIXES) or (
        len(name) >= 24 and any(c.islower() for c in name) and any(c.isdigit() for c in name))
    if looks_like_key or not _ENV_NAME.match(name):
        raise DirectorError(
            "the key variable field must hold the NAME of an environment variable (e.g. GEMINI_API_KEY), "
            "not the key itself: set the variable to your key before starting ComfyUI and put its name here "
            "(if you pasted a key into the workflow, remove it and consider revoking that key)")
    return name


def make_connection(provider: str, model: str = "", key_env: str = "", custom_url: str = "",
                    timeout_s: float = 60.0, max_retries: int = 3, retry_delay_s: float = 1.0) -> DirectorConnection:
    """Resolve a preset plus overrides into a connection; empty fields take the preset's default."""
    if provider not in PRESETS:
        raise DirectorError(f"unknown provider '{provider}': choose one of {', '.join(PRESETS)}")
    preset = PRESETS[provider]
    base_url = custom_url.strip() if provider == CUSTOM else preset.base_url
    if provider == CUSTOM and not base_url:
        raise DirectorError("provider 'Custom' needs a base URL, e.g. http://127.0.0.1:8080/v1")
    if not re.match(r"^https?://[^\s/]+", base_url):
        raise DirectorError(f"the base URL must start with http:// or https://, got '{base_url[:100]}'")
    model = model.strip() or preset.model
    if not model:
        raise DirectorError(f"no model name given for {base_url}: type the model the server serves")
    env = check_env_name(key_env) if key_env.strip() else preset.key_env
    return DirectorConnection(base_url=base_url, model=model, key_env=env, timeout_s=float(timeout_s),
                              max_retries=max(0, int(max_retries)), retry_delay_s=max(0.0, float(retry_delay_s)),
                              provider=provider)


def _openai() -> Any:
    try:
        import openai
    except ImportError:
        raise DirectorError(
            "the AI director nodes need the 'openai' package: run `pip install openai` in the Python "
            "environment that runs ComfyUI, then restart ComfyUI") from None
    return openai


def _read_key(conn: DirectorConnection) -> str | None:
    if not conn.key_env:
        return None
    key = os.environ.get(conn.key_env, "").strip()
    if not key:
        raise DirectorError(
            f"environment variable ${conn.key_env} is not set (or empty): set it to your key for "
            f"{conn.endpoint} and restart ComfyUI")
    return key


def _scrub(text: str, key: str | None) -> str:
    if key:
        text = text.replace(key, "***")
    return text


def _server_message(exc: Any) -> str:
    """The server's own short error text (from a JSON error body when there is one)."""
    body = getattr(exc, "body", None)
    message = ""
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            message = str(inner.get("message") or "")
        elif isinstance(inner, str):
            message = inner
    if not message:
        response = getattr(exc, "response", None)
        try:
            message = response.text if response is not None else ""
        except Exception:  # a streamed or closed body
            message = ""
    message = " ".join(message.split())
    return message[:300]


def _retry_after(exc: Any) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _status_error(conn: DirectorConnection, status: int, server_msg: str, tries: int) -> DirectorError:
    url = conn.endpoint
    detail = f": {server_msg}" if server_msg else ""
    if status in (401, 403):
        if conn.key_env:
            text = f"the key in ${conn.key_env} was rejected by {url}: HTTP {status}{detail}"
        else:
            text = (f"{url} refused the request without a key: HTTP {status}{detail}; name the environment "
                    "variable that holds the key in the connection node")
    elif status == 404:
        text = f"{url} answered HTTP 404{detail}: check the base URL and that model '{conn.model}' exists there"
    elif status == 429:
        text = (f"{url} kept answering HTTP 429 (rate limit or quota) after {tries} tries{detail}: wait a "
                "moment, raise the retries, or check your plan's quota")
    elif status >= 500:
        text = f"{url} failed with HTTP {status} after {tries} tries{detail}: the service has trouble, try later"
    else:
        text = (f"{url} rejected the request: HTTP {status}{detail} (does model '{conn.model}' accept images "
                "and these options?)")
    return DirectorError(text)


def chat(conn: DirectorConnection, messages: list[dict[str, Any]], *, temperature: float = 0.0,
         seed: int | None = None, abort_check: Callable[[], None] | None = None,
         sleep: Callable[[float], None] = time.sleep) -> str:
    """Send one chat-completions request and return the answer text.

    Retries 429, 5xx, timeouts and connection failures with exponential backoff
    (``retry_delay_s * 2**attempt``, or the server's Retry-After when longer, at most 60 s).
    A 400 while a seed was sent is tried once more without the seed, for servers that do not take one.
    ``abort_check`` is called before every attempt and may raise to stop (ComfyUI's cancel button).
    """
    openai = _openai()
    key = _read_key(conn)
    url = conn.endpoint
    client = openai.OpenAI(api_key=key or _NO_KEY_PLACEHOLDER, base_url=conn.base_url,
                           timeout=conn.timeout_s, max_retries=0)
    request: dict[str, Any] = {"model": conn.model, "messages": messages, "temperature": float(temperature)}
    if seed is not None:
        request["seed"] = int(seed)
    tries = 0
    attempts = 1 + conn.max_retries
    try:
        while True:
            if abort_check is not None:
                abort_check()
            tries += 1
            log.info("director: asking %s (try %d of %d)", conn.describe(), tries, attempts)
            started = time.monotonic()
            delay: float | None = None
            try:
                response = client.chat.completions.create(**request)
                log.debug("director: answer after %.2f s", time.monotonic() - started)
                return _answer_text(conn, response)
            except openai.APIStatusError as exc:
                status = int(exc.status_code)
                server_msg = _scrub(_server_message(exc), key)
                log.debug("director: HTTP %d from %s: %s", status, url, server_msg)
                if status == 400 and "seed" in request:
                    log.info("director: %s refused the request with a seed; trying again without it", url)
                    request.pop("seed")
                    tries -= 1
                    continue
                if (status == 429 or status >= 500) and tries < attempts:
                    delay = conn.retry_delay_s * 2 ** (tries - 1)
                    retry_after = _retry_after(exc)
                    if retry_after is not None:
                        delay = max(delay, retry_after)
                else:
                    raise _status_error(conn, status, server_msg, tries) from None
            except openai.APITimeoutError:
                log.debug("director: no answer from %s within %s s", url, conn.timeout_s)
                if tries >= attempts:
                    raise DirectorError(f"no answer from {url} within {conn.timeout_s:g} s (tried {tries} "
                                        "times): raise the timeout or check the server") from None
                delay = conn.retry_delay_s * 2 ** (tries - 1)
            except openai.APIConnectionError as exc:
                reason = _scrub(str(exc.__cause__ or exc), key)[:200]
                log.debug("director: cannot reach %s: %s", url, reason)
                if tries >= attempts:
                    raise DirectorError(f"cannot reach {url} (tried {tries} times): {reason}; is the server "
                                        "running and the URL right?") from None
                delay = conn.retry_delay_s * 2 ** (tries - 1)
            except openai.APIError as exc:
                raise DirectorError(f"unexpected answer from {url}: {_scrub(str(exc), key)[:300]}") from None
            delay = min(delay, _MAX_DELAY_S)
            log.info("director: %s is busy or unreachable; retrying in %.2f s", url, delay)
            sleep(delay)
    finally:
        client.close()


def _answer_text(conn: DirectorConnection, response: Any) -> str:
    if isinstance(response, (str, bytes)):  # the client hands back bodies that are not JSON as they are
        text = response.decode("utf-8", "replace") if isinstance(response, bytes) else response
        raise DirectorError(f"{conn.endpoint} did not answer like a chat-completions API: {text.strip()[:200]!r}; "
                            "check the base URL (it usually ends in /v1)")
    choices = getattr(response, "choices", None) or []
    if not choices:
        raise DirectorError(f"{conn.endpoint} returned no answer (no choices in the response)")
    message = choices[0].message
    content = getattr(message, "content", None)
    if isinstance(content, list):  # some servers return content parts
        content = "".join(part.get("text", "") if isinstance(part, dict) else str(part) for part in content)
    if not content or not str(content).strip():
        reason = getattr(choices[0], "finish_reason", None)
        raise DirectorError(f"{conn.endpoint} returned an empty answer (finish reason: {reason}); "
                            f"does model '{conn.model}' accept images?")
    return str(content).strip()
