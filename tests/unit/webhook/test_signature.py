from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from bridge.webhook.signature import signature_matches

BODY = b'{"data": {"id": "x"}}'
SECRETS = [b"current", b"previous"]


def digest(secret: str, body: bytes = BODY) -> bytes:
    return hmac.new(secret.encode(), body, hashlib.sha256).digest()


@pytest.mark.parametrize(
    "header",
    [
        digest("current").hex(),
        digest("current").hex().upper(),
        "sha256=" + digest("current").hex(),
        base64.b64encode(digest("current")).decode(),
        "sha256=" + base64.b64encode(digest("current")).decode(),
        digest("previous").hex(),  # during a rotation
        "  " + digest("current").hex() + " ",
    ],
)
def test_accepted_encodings_and_the_previous_secret(header: str) -> None:
    assert signature_matches(BODY, header, SECRETS)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        digest("other").hex(),
        digest("current", BODY + b" ").hex(),  # the signature covers the exact bytes
        digest("current").hex()[:-2],
        "sha256=zz" + digest("current").hex()[2:],
        base64.b64encode(digest("current")[:20]).decode(),
        "not a signature at all",
    ],
)
def test_refused(header: str | None) -> None:
    assert not signature_matches(BODY, header, SECRETS)


def test_no_secret_configured_refuses_everything() -> None:
    assert not signature_matches(BODY, digest("current").hex(), [])
