"""Personal data sealed at rest (issue 17): ID document numbers and mobile numbers are stored
encrypted (AES-256-GCM, a fresh 96-bit nonce per value), each ciphertext named by the id of
the key that sealed it, and searched by a keyed hash (HMAC-SHA256) kept beside it.

The application reads and writes the plain values as before: the `Sealed` column type
encrypts on the way into the database and decrypts on the way out, so forms, lists, masking,
exports and the API see numbers, and SQL sees only ciphertexts. SQL cannot compare sealed
columns (each sealing of the same number differs): searches and the database's uniqueness use
the keyed hashes of app.search_keys instead.

Keys come from the environment (or files outside the repository, *_FILE):
- PII_KEYS: "kid:base64-of-32-bytes" entries separated by commas or new lines; PII_KEY_ID is
  the one new values are sealed with (the last entry when unset). Older entries stay for the
  values they sealed until `flask ciie rotate-keys` has sealed every value with the current one.
- PII_SEARCH_KEY: base64 of at least 32 bytes, the HMAC key of the search hashes.
Development and tests use fixed development keys (key id "dev", derived from a constant, so
every development process opens the others' data whatever its SECRET_KEY); production
refuses to start without keys of its own (PII_KEYS_REQUIRED)."""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app, has_app_context

KID = re.compile(r"^[A-Za-z0-9_-]{1,16}$")
NONCE_BYTES = 12
DEV_KID = "dev"
# Not a secret: the development and test databases' keys derive from it. Production never
# uses it (it needs PII_KEYS and PII_SEARCH_KEY).
DEV_SECRET = "ciie development personal data keys: never for production"
# What a value is sealed as: bound into the ciphertext (GCM's associated data), so a sealed
# ID number pasted into a mobile column does not open.
ID_NUMBER, MOBILE = "id_number", "mobile"


class SealError(RuntimeError):
    """A stored value that does not open: an unknown key id, or a changed ciphertext."""


class KeySettingError(RuntimeError):
    """PII_KEYS, PII_KEY_ID or PII_SEARCH_KEY are missing or malformed (named in the text)."""


@dataclass(frozen=True)
class KeyRing:
    keys: dict[str, AESGCM]
    current: str
    search_key: bytes

    def seal(self, value: str, kind: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self.keys[self.current].encrypt(nonce, value.encode(), kind.encode())
        return f"{self.current}.{base64.urlsafe_b64encode(nonce + sealed).decode().rstrip('=')}"

    def open(self, stored: str, kind: str) -> str:
        kid, _, body = stored.partition(".")
        key = self.keys.get(kid)
        if key is None:
            raise SealError(f"a stored {kind} is sealed with key {kid!r}, "
                            "which PII_KEYS does not hold")
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            return key.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], kind.encode()).decode()
        except (InvalidTag, binascii.Error, ValueError) as exc:
            raise SealError(f"a stored {kind} does not open with key {kid!r}") from exc

    def digest(self, text: str) -> str:
        """The keyed hash (64 hex digits) the searches and the uniqueness compare."""
        return hmac.new(self.search_key, text.encode(), hashlib.sha256).hexdigest()


def key_id_of(stored: str | None) -> str | None:
    """The id of the key a stored value was sealed with."""
    return stored.partition(".")[0] if stored else None


def _derived(secret: str, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"ciie " + purpose).derive(secret.encode())


def _base64_key(text: str, name: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except binascii.Error:
        raise KeySettingError(f"{name} is not base64") from None
    return raw


def _setting(config, name: str) -> str:
    if config.get(f"{name}_FILE"):
        try:
            with open(config[f"{name}_FILE"], encoding="utf-8") as fh:
                return fh.read().strip()
        except OSError as exc:
            raise KeySettingError(f"{name}_FILE cannot be read: {exc.strerror}") from None
    return str(config.get(name) or "").strip()


def build_ring(config) -> KeyRing:
    """The key ring the settings describe (KeySettingError naming what is wrong)."""
    entries, search = _setting(config, "PII_KEYS"), _setting(config, "PII_SEARCH_KEY")
    if not entries or not search:
        if config.get("PII_KEYS_REQUIRED"):
            raise KeySettingError("production needs PII_KEYS (or PII_KEYS_FILE) and "
                                  "PII_SEARCH_KEY (or PII_SEARCH_KEY_FILE): "
                                  "python -m app.pii makes them")
        return KeyRing({DEV_KID: AESGCM(_derived(DEV_SECRET, b"pii encryption"))}, DEV_KID,
                       _derived(DEV_SECRET, b"pii search"))
    keys: dict[str, AESGCM] = {}
    last = None
    for entry in filter(None, (e.strip() for e in re.split(r"[,\n]", entries))):
        kid, sep, text = entry.partition(":")
        if not sep or not KID.match(kid):
            raise KeySettingError("PII_KEYS entries are kid:base64 (kid: 1-16 letters, digits, "
                                  "- or _)")
        raw = _base64_key(text, f"PII_KEYS {kid}")
        if len(raw) != 32:
            raise KeySettingError(f"PII_KEYS {kid} is {len(raw)} bytes, not 32")
        keys[kid], last = AESGCM(raw), kid
    current = str(config.get("PII_KEY_ID") or last or "")
    if current not in keys:
        raise KeySettingError(f"PII_KEY_ID {current!r} is not one of PII_KEYS")
    search_key = _base64_key(search, "PII_SEARCH_KEY")
    if len(search_key) < 32:
        raise KeySettingError("PII_SEARCH_KEY is shorter than 32 bytes")
    return KeyRing(keys, current, search_key)


def ring() -> KeyRing:
    """The running application's key ring (built once per application)."""
    app = current_app._get_current_object()
    found = app.extensions.get("ciie_pii")
    if found is None:
        found = app.extensions["ciie_pii"] = build_ring(app.config)
    return found


def seal(value: str | None, kind: str) -> str | None:
    return None if value is None else ring().seal(value, kind)


def unseal(stored: str | None, kind: str) -> str | None:
    return None if stored is None else ring().open(stored, kind)


def digest(text: str) -> str:
    return ring().digest(text)


def new_key_line(today: date | None = None) -> str:
    """A fresh PII_KEYS entry, "k<yyyymmdd>:<base64 of 32 random bytes>"."""
    kid = f"k{(today or date.today()):%Y%m%d}"
    return f"{kid}:{base64.b64encode(os.urandom(32)).decode()}"


class Sealed(sa.types.TypeDecorator):
    """A string column stored sealed (see the module): the application binds and reads the
    plain text. 128 characters hold a 32-character value's ciphertext and its key id."""

    impl = sa.String(128)
    cache_ok = True

    def __init__(self, kind: str, length: int = 128):
        super().__init__(length)
        self.kind = kind

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if not has_app_context():
            raise SealError("sealing needs the application's keys (an app context)")
        return ring().seal(str(value), self.kind)

    def process_result_value(self, value, dialect):
        return None if value is None else ring().open(value, self.kind)

    def coerce_compared_value(self, op, value):
        # A comparison with a sealed column would compare ciphertexts, which never match:
        # searches go through the keyed hashes (app.search_keys).
        raise SealError(f"a sealed {self.kind} cannot be compared in SQL: use its search key")

    def copy(self, **kw):
        return Sealed(self.kind, self.impl.length)


def sealed_columns(metadata: sa.MetaData) -> list[tuple[sa.Table, sa.Column]]:
    """Every sealed column of the schema, with its table."""
    return [(table, column) for table in metadata.sorted_tables for column in table.columns
            if isinstance(column.type, Sealed)]


if __name__ == "__main__":
    # `python -m app.pii`: a fresh PII_KEYS entry and a PII_SEARCH_KEY, to store outside the
    # repository (docs/production.md); nothing is written here.
    print(f"PII_KEYS entry:  {new_key_line()}")
    print(f"PII_SEARCH_KEY:  {base64.b64encode(os.urandom(32)).decode()}")
