"""Badge cards as PDF: A4 sheets of eight cards (2 × 4) with cut lines.

Each card shows the edition, the tag in its colour (visitor blue, staff green, VIP red) in
Chinese and English, the photo, name, unit, delegation or sub-delegation, the entry dates, the
QR code of the signed token (vector, drawn with segno's matrix) and the badge number. Text
uses the embedded CJK font, so Chinese renders everywhere and can be read back from the file.
The workflow prints only badges whose holder's photo is on file; a photo that cannot be read
fails the sheet rather than print a card without a face.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date
from typing import Callable

import segno
import sqlalchemy as sa
from flask_babel import force_locale
from flask_babel import gettext as _
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen.canvas import Canvas

from app import models as m
from app import storage
from app.badge_tokens import badge_token
from app.documents.fonts import cjk_font
from app.extensions import db

COLUMNS, ROWS = 2, 4
CARD_W, CARD_H = 95 * mm, 68 * mm
MARGIN_X = (A4[0] - COLUMNS * CARD_W) / 2
MARGIN_Y = (A4[1] - ROWS * CARD_H) / 2
PER_PAGE = COLUMNS * ROWS
TAG_COLOURS = {
    m.Tag.visitor: colors.HexColor("#1f5fa8"),
    m.Tag.staff: colors.HexColor("#2e7d32"),
    m.Tag.vip: colors.HexColor("#b71c1c"),
}


@dataclass(frozen=True)
class Card:
    """What one card prints."""

    number: str
    edition: int
    name: str
    unit: str
    delegation: str | None
    tag: m.Tag
    entry_dates: list[date]
    token: str
    photo_key: str


def cards(badge_ids: list[int]) -> list[Card]:
    """The cards of these badges in number order (one query)."""
    PR = m.PersonRegistration
    rows = db.session.execute(
        sa.select(m.Badge, m.Edition, PR.entry_days, m.Person.photo_key)
        .join(m.Edition, m.Edition.id == m.Badge.edition_id)
        .join(m.Person, m.Person.id == m.Badge.person_id)
        .outerjoin(PR, sa.and_(PR.badge_id == m.Badge.id, PR.edition_id == m.Badge.edition_id))
        .where(m.Badge.id.in_(badge_ids)).order_by(m.Badge.number)).all()
    return [Card(badge.number, edition.number, badge.printed_name, badge.printed_unit,
                 badge.printed_delegation, badge.tag, edition.mask_to_days(entry_days or 0),
                 badge_token(badge.id, badge.token_nonce, edition.number, entry_days or 0),
                 photo_key)
            for badge, edition, entry_days, photo_key in rows]


def _both(text: Callable[[], object]) -> tuple[str, str]:
    """A catalogue string in Chinese and in English (cards are bilingual); the English is
    empty when both read the same (e.g. "VIP")."""
    with force_locale("zh"):
        zh = str(text())
    with force_locale("en"):
        en = str(text())
    return zh, "" if en == zh else en


def _fit(text: str, font: str, size: float, width: float, smallest: float = 5.5
         ) -> tuple[str, float]:
    """Shrink the text to fit the width, then cut it with an ellipsis."""
    while size > smallest and stringWidth(text, font, size) > width:
        size -= 0.5
    if stringWidth(text, font, size) <= width:
        return text, size
    while text and stringWidth(text + "…", font, size) > width:
        text = text[:-1]
    return text + "…", size


def _qr(canvas: Canvas, token: str, x: float, y: float, size: float) -> None:
    """The QR code as vector squares (crisp at any print resolution), quiet zone included."""
    matrix = segno.make(token, error="m", micro=False).matrix
    modules = len(matrix) + 4
    cell = size / modules
    canvas.setFillColor(colors.white)
    canvas.rect(x, y, size, size, stroke=0, fill=1)
    path = canvas.beginPath()
    for r, row in enumerate(matrix):
        for c, dark in enumerate(row):
            if dark:
                path.rect(x + (c + 2) * cell, y + size - (r + 3) * cell, cell, cell)
    canvas.setFillColor(colors.black)
    canvas.drawPath(path, stroke=0, fill=1)


def _photo(canvas: Canvas, key: str, x: float, y: float, w: float, h: float) -> None:
    canvas.setStrokeColor(colors.HexColor("#999999"))
    canvas.setFillColor(colors.HexColor("#eeeeee"))
    canvas.rect(x, y, w, h, stroke=1, fill=1)
    canvas.drawImage(ImageReader(storage.path_of(key)), x, y, w, h,
                     preserveAspectRatio=True, anchor="c")


def _card(canvas: Canvas, card: Card, x: float, y: float, font: str, texts: dict) -> None:
    colour = TAG_COLOURS[card.tag]
    # Cut line
    canvas.setLineWidth(0.3)
    canvas.setStrokeColor(colors.HexColor("#bbbbbb"))
    canvas.rect(x, y, CARD_W, CARD_H, stroke=1, fill=0)
    # Header band: the edition, and the tag in its colour
    band = 12 * mm
    canvas.setFillColor(colour)
    canvas.rect(x, y + CARD_H - band, CARD_W, band, stroke=0, fill=1)
    canvas.setFillColor(colors.white)
    canvas.setFont(font, 8)
    canvas.drawString(x + 4 * mm, y + CARD_H - 5 * mm, texts["edition"][card.edition])
    tag_zh, tag_en = texts["tags"][card.tag]
    canvas.setFont(font, 11)
    canvas.drawString(x + 4 * mm, y + CARD_H - 10 * mm, tag_zh)
    canvas.setFont(font, 8)
    canvas.drawRightString(x + CARD_W - 4 * mm, y + CARD_H - 10 * mm, tag_en)
    # Photo
    photo_w, photo_h = 24 * mm, 32 * mm
    photo_y = y + CARD_H - band - 3 * mm - photo_h
    _photo(canvas, card.photo_key, x + 4 * mm, photo_y, photo_w, photo_h)
    # Name, unit, delegation
    text_x = x + 4 * mm + photo_w + 4 * mm
    qr_size = 27 * mm
    text_w = CARD_W - (text_x - x) - 3 * mm
    canvas.setFillColor(colors.black)
    name, size = _fit(card.name, font, 16, text_w)
    canvas.setFont(font, size)
    canvas.drawString(text_x, y + CARD_H - band - 9 * mm, name)
    unit, size = _fit(card.unit, font, 8, text_w)
    canvas.setFont(font, size)
    canvas.drawString(text_x, y + CARD_H - band - 14 * mm, unit)
    if card.delegation:
        delegation, size = _fit(card.delegation, font, 7, text_w)
        canvas.setFont(font, size)
        canvas.setFillColor(colors.HexColor("#444444"))
        canvas.drawString(text_x, y + CARD_H - band - 18.5 * mm, delegation)
    # Entry dates, under the photo
    canvas.setFillColor(colors.black)
    canvas.setFont(font, 6.5)
    canvas.drawString(x + 4 * mm, y + 8.5 * mm, texts["entry"])
    days = " ".join(d.strftime("%m-%d") for d in card.entry_dates)
    days, size = _fit(days, font, 8, CARD_W - qr_size - 10 * mm)
    canvas.setFillColor(colour)
    canvas.setFont(font, size)
    canvas.drawString(x + 4 * mm, y + 4 * mm, days)
    # QR code and badge number
    qr_x = x + CARD_W - qr_size - 3 * mm
    _qr(canvas, card.token, qr_x, y + 5 * mm, qr_size)
    canvas.setFillColor(colors.black)
    canvas.setFont(font, 7)
    canvas.drawCentredString(qr_x + qr_size / 2, y + 2 * mm, card.number)


def _texts(editions: set[int]) -> dict:
    def joined(text: Callable[[], object], sep: str) -> str:
        return sep.join(part for part in _both(text) if part)

    return {
        "edition": {n: joined(lambda n=n: _("CIIE %(number)s", number=n), " · ")
                    for n in editions},
        "tags": {tag: _both(lambda tag=tag: tag.label) for tag in m.Tag},
        "entry": joined(lambda: _("Entry dates"), " "),
    }


def badge_sheet(badge_ids: list[int],
                progress: Callable[[int, int], None] = lambda done, total: None) -> bytes:
    """The badges as A4 sheets, eight cards a page; `progress` hears of each finished page."""
    font = cjk_font()
    batch = cards(badge_ids)
    texts = _texts({card.edition for card in batch})
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=A4, pageCompression=1)
    canvas.setTitle(_("Badges"))
    canvas.setAuthor("CIIE")
    for i, card in enumerate(batch):
        slot = i % PER_PAGE
        if i and slot == 0:
            canvas.showPage()
            progress(i, len(batch))
        column, row = slot % COLUMNS, slot // COLUMNS
        _card(canvas, card, MARGIN_X + column * CARD_W,
              A4[1] - MARGIN_Y - (row + 1) * CARD_H, font, texts)
    canvas.showPage()
    canvas.save()
    return buffer.getvalue()
