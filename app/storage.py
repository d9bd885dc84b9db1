"""Uploaded files: checked by content (not by name), size-limited, stored outside static/.

Files get random names; they are served only by views that check the actor's scope first.
"""
from __future__ import annotations

import io
import os
import uuid

from flask import current_app
from flask_babel import lazy_gettext as _l
from PIL import Image, UnidentifiedImageError

from app.workflow.errors import WorkflowError

_SIGNATURES = (
    (b"%PDF-", "application/pdf", "pdf"),
    (b"\xff\xd8\xff", "image/jpeg", "jpg"),
    (b"\x89PNG\r\n\x1a\n", "image/png", "png"),
)


def sniff(head: bytes) -> tuple[str, str] | None:
    for signature, content_type, ext in _SIGNATURES:
        if head.startswith(signature):
            return content_type, ext
    return None


def read_upload(file_storage, max_bytes: int, allowed: tuple[str, ...]) -> tuple[bytes, str, str]:
    """Read an uploaded file and check its real type and size; (data, content_type, ext)."""
    if file_storage is None or not getattr(file_storage, "filename", ""):
        raise WorkflowError(_l("Choose a file to upload."), 400)
    data = file_storage.read(max_bytes + 1)
    if not data:
        raise WorkflowError(_l("The file is empty."), 400)
    if len(data) > max_bytes:
        raise WorkflowError(_l("The file is larger than %(size)s MB.",
                               size=round(max_bytes / 1024 / 1024, 1)), 413)
    kind = sniff(data)
    if kind is None or kind[0] not in allowed:
        raise WorkflowError(_l("This type of file is not accepted."), 400)
    if kind[0].startswith("image/"):
        try:
            Image.open(io.BytesIO(data)).verify()
        except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError):
            raise WorkflowError(_l("The image is damaged or not an image."), 400) from None
    return data, kind[0], kind[1]


def new_key(ext: str) -> str:
    """A random storage key, for a file written straight to `path_of(key)` (exports)."""
    return f"{uuid.uuid4().hex}.{ext}"


def store(data: bytes, ext: str) -> str:
    """Write bytes under a random name in the upload folder; returns the storage key."""
    key = new_key(ext)
    with open(path_of(key), "wb") as fh:
        fh.write(data)
    return key


def path_of(key: str) -> str:
    return os.path.join(current_app.config["UPLOAD_FOLDER"], os.path.basename(key))


def remove(key: str | None) -> None:
    if key:
        try:
            os.remove(path_of(key))
        except FileNotFoundError:
            pass
