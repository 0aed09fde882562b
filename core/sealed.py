"""Authenticated state: bytes a process wrote for itself (a Faust table's changelog) that anyone with
write access to the topic could otherwise replace.

`seal` prefixes an HMAC-SHA256 tag over a context (which table and key the bytes belong to) and the
payload, under a secret only the workers hold; `unseal` checks the tag in constant time and returns
the payload only if it matches, so nothing is deserialised before it is known to be ours. The
context stops a valid state of one key (or table) from being replayed under another.
"""

from __future__ import annotations

import hashlib
import hmac

from citygrid.errors import CitygridError

MAGIC = b"CGS1"  # citygrid sealed state, format 1
TAG_BYTES = 32
MIN_KEY_BYTES = 32


class StateTampered(CitygridError, reason="state_tampered"):
    """Sealed bytes whose tag does not match: written by someone without the key, or changed."""


def _tag(key: bytes, context: bytes, payload: bytes) -> bytes:
    mac = hmac.new(key, digestmod=hashlib.sha256)
    mac.update(len(context).to_bytes(4, "big"))
    mac.update(context)
    mac.update(payload)
    return mac.digest()


def check_key(key: bytes) -> bytes:
    """`key` if it is long enough to be a secret, else ValueError."""
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"a state key must be at least {MIN_KEY_BYTES} bytes")
    return key


def seal(key: bytes, context: bytes, payload: bytes) -> bytes:
    """`payload` with its tag under `key` for `context`."""
    return MAGIC + _tag(key, context, payload) + payload


def unseal(key: bytes, context: bytes, sealed: bytes) -> bytes:
    """The payload `seal` wrapped, or StateTampered if the bytes are not sealed by `key` for `context`."""
    if not sealed.startswith(MAGIC) or len(sealed) < len(MAGIC) + TAG_BYTES:
        raise StateTampered("state is not sealed (no citygrid state header)")
    tag = sealed[len(MAGIC):len(MAGIC) + TAG_BYTES]
    payload = sealed[len(MAGIC) + TAG_BYTES:]
    if not hmac.compare_digest(tag, _tag(key, context, payload)):
        raise StateTampered("state's authentication tag does not match: not written by a worker")
    return payload
