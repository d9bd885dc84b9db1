"""The badge photo test set in tests/data/photos/ (SOURCES.md names each picture's source,
expected.json the check's verdict on it)."""
from __future__ import annotations

import io
import json
import os

from PIL import Image

PHOTOS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "photos")


def photo_bytes(name: str) -> bytes:
    with open(os.path.join(PHOTOS, name), "rb") as fh:
        return fh.read()


def expected_verdicts() -> dict[str, dict]:
    with open(os.path.join(PHOTOS, "expected.json"), encoding="utf-8") as fh:
        return json.load(fh)


def face_photo(kind: str = "PNG") -> bytes:
    """A photo the check passes (one frontal face, head and shoulders, light plain backdrop:
    the NASA portrait's crop), as a PNG or JPEG file."""
    buffer = io.BytesIO()
    Image.open(os.path.join(PHOTOS, "portrait.jpg")).save(buffer, kind)
    return buffer.getvalue()
