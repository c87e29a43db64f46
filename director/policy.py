"""What the server admin allows the director to use: key variables, custom hosts, audio folders.

A workflow is untrusted: it must not be able to pick any environment variable of the server and have its value
sent to a URL of its choice. So a key variable is used only when it is the preset's own variable or the admin
lists it, and a Custom URL is asked only when the admin lists its host. Refusals never say whether a variable
exists. The settings are environment variables the admin sets before starting ComfyUI; they are read at each use.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

from .errors import DirectorError

KEYS_ENV = "DYNAMICRAFTER_DIRECTOR_KEYS"
"""Comma- or space-separated names of further environment variables a workflow may name as its key."""
HOSTS_ENV = "DYNAMICRAFTER_DIRECTOR_HOSTS"
"""Comma- or space-separated hosts the Custom provider may ask: ``host``, ``host:port`` or ``scheme://host:port``."""
AUDIO_DIRS_ENV = "DYNAMICRAFTER_AUDIO_DIRS"
"""Folders (separated like PATH) the Soundtrack node may read besides ComfyUI's input folder."""

_SEPARATORS = re.compile(r"[\s,;]+")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _listed(env: str) -> list[str]:
    return [item for item in _SEPARATORS.split(os.environ.get(env, "")) if item]


def allowed_key_vars(preset_key_env: str | None) -> set[str]:
    """The variable names a connection with this preset may read its key from."""
    names = set(_listed(KEYS_ENV))
    if preset_key_env:
        names.add(preset_key_env)
    return names


def check_key_var(name: str, preset_key_env: str | None, provider: str) -> None:
    """Refuse a key variable the admin does not allow, with the same words whether it exists or not."""
    if name in allowed_key_vars(preset_key_env):
        return
    own = f"the preset's own {preset_key_env} or " if preset_key_env else ""
    raise DirectorError(
        f"this server does not allow the key variable named in this Director Connection for provider '{provider}': "
        f"use {own}a variable the server admin lists in {KEYS_ENV} (ask the admin to add its name there and "
        "restart ComfyUI)"
    )


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 0)
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def _entry_matches(entry: str, scheme: str, host: str, port: int) -> bool:
    parts = urlsplit(entry if "://" in entry else "//" + entry)
    try:
        entry_port = parts.port
    except ValueError:
        return False
    return (
        (parts.hostname or "").lower() == host
        and (not parts.scheme or parts.scheme.lower() == scheme)
        and (entry_port is None or entry_port == port)
    )


def check_custom_url(url: str) -> None:
    """Refuse a Custom base URL that is malformed, carries credentials, or whose host the admin does not list."""
    try:
        parts = urlsplit(url)
        scheme, host, port = _origin(url)
    except ValueError:
        raise DirectorError("the Custom base URL is not a valid URL: write it like http://127.0.0.1:8080/v1") from None
    if scheme not in _DEFAULT_PORTS or not host:
        raise DirectorError(
            "the Custom base URL must start with http:// or https:// and name a host, e.g. http://127.0.0.1:8080/v1"
        )
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        raise DirectorError(
            "the Custom base URL must not hold a user name, password, query or fragment: "
            "keys go in an environment variable, never in the URL"
        )
    if not any(_entry_matches(entry, scheme, host, port) for entry in _listed(HOSTS_ENV)):
        raise DirectorError(
            f"this server does not allow the Custom provider to ask {scheme}://{host}:{port}: the server admin "
            f"lists the hosts it may ask in {HOSTS_ENV} (e.g. {HOSTS_ENV}=127.0.0.1:8080) and restarts ComfyUI; "
            "or use one of the presets"
        )


def audio_roots(input_dir: str | Path) -> list[Path]:
    """ComfyUI's input folder, then the admin's folders from ``DYNAMICRAFTER_AUDIO_DIRS``, resolved."""
    roots = [Path(input_dir)]
    roots += [Path(item).expanduser() for item in os.environ.get(AUDIO_DIRS_ENV, "").split(os.pathsep) if item.strip()]
    return [root.resolve() for root in roots]
