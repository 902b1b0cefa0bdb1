"""Standard Webhooks signatures: the ``webhook_secret`` setting and the three headers.

The secret is ``whsec_`` followed by the base64 of the signing key, or a sequence of such
secrets while keys are rotated. A delivery carries::

    webhook-id:        the message id (the same on every retry of one delivery)
    webhook-timestamp: integer seconds since the epoch, when this attempt was sent
    webhook-signature: "v1," + base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}")),
                       one per key, space-separated, in the order of the secrets

Neither the secret nor the key is ever put in an error message, a log record or a repr.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence

from ._errors import ConfigurationError

SECRET_PREFIX = "whsec_"


def secret_key(secret: object) -> bytes:
    """The signing key of a ``webhook_secret``: the bytes its base64 part decodes to.

    Raises:
        ConfigurationError: not a str of ``whsec_`` followed by non-empty, valid base64
            (the message never quotes the value).
    """
    wrong = ConfigurationError(
        "webhook_secret must be 'whsec_' followed by the base64 of the signing key"
    )
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
        raise wrong
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise wrong from None
    if not key:
        raise wrong
    return key


def secret_keys(secret: object) -> tuple[bytes, ...]:
    """The signing keys of a ``webhook_secret``: one secret, or a non-empty sequence of
    them (key rotation: the receiver accepts a delivery signed by any key it knows).

    Raises:
        ConfigurationError: an empty sequence, or a secret `secret_key` refuses (the
            message never quotes a value).
    """
    if not isinstance(secret, Sequence) or isinstance(secret, str | bytes):
        return (secret_key(secret),)
    if not secret:
        raise ConfigurationError("webhook_secret must not be an empty sequence of secrets")
    return tuple(secret_key(each) for each in secret)


def signature(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value of ``body`` sent as ``message_id`` at ``timestamp``."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signed_headers(
    keys: Sequence[bytes], message_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three Standard Webhooks headers of one attempt, signed with each of ``keys``."""
    signatures = " ".join(signature(key, message_id, timestamp, body) for key in keys)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signatures,
    }
