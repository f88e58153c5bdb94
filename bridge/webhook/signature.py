"""Verify ``X-Webhook-Signature``: HMAC-SHA256 of the raw body as received, keyed with the
secret (its UTF-8 bytes).

PassEntry documents the HMAC but not its encoding, so lowercase (or uppercase) hex and
base64 are both accepted, with or without a ``sha256=`` prefix. Every candidate secret is
tried (the current one and, during a rotation, the previous one), each comparison in
constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence

__all__ = ["signature_matches"]


def signature_matches(body: bytes, header: str | None, keys: Sequence[bytes]) -> bool:
    if not header or not keys:
        return False
    given = _digest_bytes(header.strip())
    if given is None or len(given) != hashlib.sha256().digest_size:
        return False
    matched = False
    for key in keys:
        expected = hmac.new(key, body, hashlib.sha256).digest()
        # No early exit: the time taken does not tell which secret matched.
        matched |= hmac.compare_digest(expected, given)
    return matched


def _digest_bytes(text: str) -> bytes | None:
    """The 32 bytes a header names, whichever of the accepted encodings it uses."""
    if text[:7].lower() == "sha256=":
        text = text[7:]
    if len(text) == 64:
        try:
            return bytes.fromhex(text)
        except ValueError:
            return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
