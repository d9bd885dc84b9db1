"""The CJK font every PDF of the app embeds, registered with reportlab once per process.

reportlab embeds TrueType outlines only: Debian's Noto CJK fonts are PostScript-flavoured
(CFF) and cannot be used, so the defaults are the WenQuanYi TrueType fonts (`fonts-wqy-microhei`,
`fonts-wqy-zenhei`, installed by scripts/test), then other TrueType CJK fonts Debian ships.
`CJK_FONT_PATH` (a .ttf or .ttc file; `CJK_FONT_INDEX` picks the face in a collection) overrides
them; a configured file that is missing is an error rather than a silent fallback.
"""
from __future__ import annotations

import os
import threading

from flask import current_app, has_app_context
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont

FONT_NAME = "CiieCJK"
DEFAULT_PATHS = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/arphic/uming.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
)
_lock = threading.Lock()


class FontMissing(RuntimeError):
    """No usable CJK TrueType font: Chinese text cannot be printed."""


def font_path() -> tuple[str, int]:
    """The font file to embed and the face index in it (collections hold several faces)."""
    config = current_app.config if has_app_context() else {}
    configured = config.get("CJK_FONT_PATH")
    if configured:
        if not os.path.isfile(configured):
            raise FontMissing(f"CJK_FONT_PATH {configured!r} does not exist")
        return configured, int(config.get("CJK_FONT_INDEX") or 0)
    for path in DEFAULT_PATHS:
        if os.path.isfile(path):
            return path, 0
    raise FontMissing("no CJK TrueType font found: install fonts-wqy-microhei or set "
                      "CJK_FONT_PATH")


def cjk_font() -> str:
    """The reportlab name of the CJK font, registering it on first use."""
    with _lock:
        if FONT_NAME not in pdfmetrics.getRegisteredFontNames():
            path, index = font_path()
            pdfmetrics.registerFont(TTFont(FONT_NAME, path, subfontIndex=index))
    return FONT_NAME
