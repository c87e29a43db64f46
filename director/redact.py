"""Every written form of a key, so that no message, log line or error shows it in any escaping."""

from __future__ import annotations

import base64
import json
import re
from urllib.parse import quote, quote_plus

REDACTED = "***"
_MIN_PART = 4  # shorter lines of a multi-line key are too common to replace everywhere


def key_forms(key: str) -> list[str]:
    """The key raw, repr/JSON/unicode-escaped, as UTF-8 bytes repr, URL- and percent-encoded, base64, and each
    of its lines; longest first so that a longer form is replaced before a part of it."""
    forms = {
        key,
        repr(key)[1:-1],
        json.dumps(key)[1:-1],
        json.dumps(key, ensure_ascii=False)[1:-1],
        key.encode("unicode_escape").decode("ascii"),
        repr(key.encode("utf-8", "backslashreplace"))[2:-1],
        quote(key, safe=""),
        quote(key),
        quote_plus(key),
        base64.b64encode(key.encode("utf-8", "replace")).decode(),
    }
    forms.update(line.strip() for line in key.splitlines())
    return sorted((f for f in forms if len(f) >= _MIN_PART), key=len, reverse=True)


def scrub(text: str, key: str | None) -> str:
    """``text`` with every form of ``key`` replaced by ``***`` (ignoring case, for %c3 as well as %C3)."""
    if not key:
        return text
    for form in key_forms(key):
        text = re.sub(re.escape(form), REDACTED, text, flags=re.IGNORECASE)
    return text
