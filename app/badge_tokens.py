"""The badge QR code, signed with Ed25519 so that a gate holding only the public keys verifies
it offline. Crypto and key files only (no database, no workflow), so the badge workflow, the
card printer and the gate share it.

A code is `base64url(payload).base64url(signature)`, both without padding. The payload is 18
bytes: format version (1), key id (4: the first bytes of the SHA-256 of the raw public key),
badge id (4), edition number (1), entry-day mask of that edition (4: bit i = the edition's
i-th day) and the first 4 bytes of the badge's nonce (a reprint draws a new nonce, so the old
card's code names no badge any more). About 111 characters: a version 7 QR code at level M.

Keys live in BADGE_SIGNING_KEYS_DIR, outside the repository: `<kid>.key` (PKCS#8 PEM, private,
mode 0600), `<kid>.pub` (public PEM) and `current` (the kid that signs). Every `.pub` is
published to the gates, so codes signed before a rotation keep verifying; a private key may be
deleted once it stopped signing. Codes of the HMAC format used before Ed25519 are still read
(online only, with SECRET_KEY) while those cards are in use.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from flask import current_app
from itsdangerous import BadSignature, Signer

CODE_VERSION = 1
PAYLOAD = struct.Struct(">B4sIBI4s")
NONCE_TAG_BYTES = 4
_CODE = re.compile(r"([A-Za-z0-9_-]{24})\.([A-Za-z0-9_-]{86})")
# The HMAC codes of before: `<badge id>.<nonce>.<signature>`.
LEGACY_SALT = "ciie.badge-qr"
_LEGACY_CLAIM = re.compile(r"([0-9]{1,10})\.([0-9a-f]{32})")
# A genuine code is about 111 characters; anything much longer is refused before any crypto.
MAX_TOKEN_LENGTH = 200


class BadgeKeyError(RuntimeError):
    """No key to sign with, or a key file that cannot be read."""


def new_nonce() -> str:
    return os.urandom(16).hex()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes | None:
    """Decoded bytes, or None unless `text` is exactly how b64url spells them: base64 ignores
    the spare low bits of the last character, and only one spelling of a code is genuine."""
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    return data if b64url(data) == text else None


# ---- keys -----------------------------------------------------------------------------------

def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:4].hex()


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        os.fchmod(handle, mode)
        os.write(handle, data)
        os.fsync(handle)
    finally:
        os.close(handle)
    os.replace(temp, path)


def generate_key(directory: str | os.PathLike) -> str:
    """A new key pair in `directory`, which signs from now on; the earlier keys stay
    published. Returns the new key id."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    private = Ed25519PrivateKey.generate()
    kid = key_id(private.public_key())
    _write_atomically(folder / f"{kid}.pub", private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo), 0o644)
    _write_atomically(folder / f"{kid}.key", private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()), 0o600)
    _write_atomically(folder / "current", kid.encode() + b"\n", 0o644)
    return kid


@dataclass(frozen=True)
class KeyRing:
    """The published public keys (kid -> key) and the key that signs, if this server has it."""

    public: dict[str, Ed25519PublicKey]
    signing_kid: str | None
    signing_key: Ed25519PrivateKey | None


def load_keys(directory: str | os.PathLike) -> KeyRing:
    folder = Path(directory)
    public = {}
    for path in sorted(folder.glob("*.pub")):
        key = serialization.load_pem_public_key(path.read_bytes())
        if not isinstance(key, Ed25519PublicKey) or key_id(key) != path.stem:
            raise BadgeKeyError(f"{path} is not the Ed25519 public key {path.stem}")
        public[path.stem] = key
    current = folder / "current"
    kid = current.read_text().strip() if current.exists() else None
    signing = None
    if kid:
        path = folder / f"{kid}.key"
        try:
            signing = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except FileNotFoundError:
            raise BadgeKeyError(f"{current} names {kid}, but {path} is missing") from None
        if not isinstance(signing, Ed25519PrivateKey) or key_id(signing.public_key()) != kid:
            raise BadgeKeyError(f"{path} is not the Ed25519 private key {kid}")
        public.setdefault(kid, signing.public_key())
    return KeyRing(public, kid, signing)


def _stamp(folder: Path) -> tuple:
    """Changes whenever a key is added, removed or made current (`flask ciie badge-keys`)."""
    try:
        return tuple((p.name, p.stat().st_mtime_ns) for p in sorted(folder.iterdir()))
    except FileNotFoundError:
        return ()


def keyring() -> KeyRing:
    """The app's keys, read again only when the key directory changed."""
    folder = Path(current_app.config["BADGE_SIGNING_KEYS_DIR"])
    stamp = (str(folder), _stamp(folder))
    cached = current_app.extensions.get("ciie_badge_keys")
    if cached is None or cached[0] != stamp:
        cached = current_app.extensions["ciie_badge_keys"] = (stamp, load_keys(folder))
    return cached[1]


def published_keys() -> dict[str, str]:
    """What gates download: kid -> raw public key, base64url."""
    return {kid: b64url(key.public_bytes(serialization.Encoding.Raw,
                                         serialization.PublicFormat.Raw))
            for kid, key in keyring().public.items()}


# ---- codes ----------------------------------------------------------------------------------

def badge_token(badge_id: int, nonce: str, edition: int, entry_days: int) -> str:
    """The text of a badge's QR code, signed with the current key."""
    ring = keyring()
    if ring.signing_key is None:
        raise BadgeKeyError("no badge signing key: run `flask ciie badge-keys generate`")
    payload = PAYLOAD.pack(CODE_VERSION, bytes.fromhex(ring.signing_kid), badge_id, edition,
                           entry_days, bytes.fromhex(nonce)[:NONCE_TAG_BYTES])
    return f"{b64url(payload)}.{b64url(ring.signing_key.sign(payload))}"


@dataclass(frozen=True)
class TokenClaim:
    """What the server reads from a genuine code: which badge, and with which nonce it was
    made. (Its edition and entry days are for offline gates; the server judges with its
    own records.)"""

    badge_id: int
    nonce: str  # the nonce's first bytes (Ed25519) or all of it (HMAC), hex

    def names(self, nonce: str) -> bool:
        """Whether the code was made with this nonce (the badge's current one)."""
        return hmac.compare_digest(nonce[:len(self.nonce)], self.nonce)


def read_token(token: str | None) -> TokenClaim | None:
    """What a genuine code says; None for a code this system did not sign (forged, altered,
    damaged, signed with an unknown key or another secret)."""
    token = (token or "").strip()
    if not token or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
        return None
    match = _CODE.fullmatch(token)
    if match is None:
        return _read_legacy(token)
    payload, signature = _unb64url(match.group(1)), _unb64url(match.group(2))
    if payload is None or signature is None or len(payload) != PAYLOAD.size:
        return None
    version, kid, badge_id, _edition, _entry_days, tag = PAYLOAD.unpack(payload)
    key = keyring().public.get(kid.hex())
    if version != CODE_VERSION or key is None:
        return None
    try:
        key.verify(signature, payload)
    except InvalidSignature:
        return None
    return TokenClaim(badge_id, tag.hex())


def _read_legacy(token: str) -> TokenClaim | None:
    signer = Signer(current_app.config["SECRET_KEY"], salt=LEGACY_SALT, sep=".",
                    key_derivation="hmac", digest_method=hashlib.sha256)
    try:
        payload = signer.unsign(token).decode()
    except BadSignature:
        return None
    if not hmac.compare_digest(signer.sign(payload).decode(), token):
        return None
    match = _LEGACY_CLAIM.fullmatch(payload)
    if match is None:
        return None
    return TokenClaim(int(match.group(1)), match.group(2))
