"""The badge QR token: `<badge id>.<nonce>.<signature>`, signed and read back. Crypto only (no
database, no workflow), so the badge workflow, the card printer and the gate share it.

The signature is an HMAC-SHA256 (itsdangerous `Signer`, key derived from the app's SECRET_KEY
with its own salt) over the id and the nonce. Nobody without the secret can make a code for
another badge, and a new nonce makes every printed code of that badge worthless.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from flask import current_app
from itsdangerous import BadSignature, Signer

TOKEN_SALT = "ciie.badge-qr"
# A genuine code is about 90 characters; anything much longer is refused before any crypto.
MAX_TOKEN_LENGTH = 200
_CLAIM = re.compile(r"([0-9]{1,10})\.([0-9a-f]{32})")


def new_nonce() -> str:
    return secrets.token_hex(16)


def _signer() -> Signer:
    return Signer(current_app.config["SECRET_KEY"], salt=TOKEN_SALT, sep=".",
                  key_derivation="hmac", digest_method=hashlib.sha256)


def badge_token(badge_id: int, nonce: str) -> str:
    """The text of a badge's QR code: its id and nonce, signed."""
    return _signer().sign(f"{badge_id}.{nonce}").decode()


@dataclass(frozen=True)
class TokenClaim:
    badge_id: int
    nonce: str


def read_token(token: str | None) -> TokenClaim | None:
    """What a genuine code says; None for a code this system did not sign (forged, altered,
    damaged, or signed with another secret). The signature is compared in constant time."""
    token = (token or "").strip()
    if not token or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
        return None
    signer = _signer()
    try:
        payload = signer.unsign(token).decode()
    except BadSignature:
        return None
    # Base64 ignores the spare low bits of the last character, so several spellings of one
    # signature decode alike; only the spelling this system writes is genuine.
    if not hmac.compare_digest(signer.sign(payload).decode(), token):
        return None
    match = _CLAIM.fullmatch(payload)
    if match is None:
        return None
    return TokenClaim(int(match.group(1)), match.group(2))
