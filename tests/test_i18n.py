"""Every message of ours has a zh translation; the language switch changes the interface."""
from __future__ import annotations

import os
import subprocess
import sys

from babel.messages.pofile import read_po

from tests.conftest import ROOT, UNIT_A, text_of

sys.path.insert(0, os.path.join(ROOT, "scripts"))
from i18n import KEYWORDS, po_path, untranslated  # noqa: E402


def test_every_message_has_a_zh_translation():
    assert untranslated("zh") == []


def test_catalogues_hold_every_message_in_the_code(tmp_path):
    pot = tmp_path / "messages.pot"
    subprocess.run([sys.executable, "-m", "babel.messages.frontend", "-q", "extract",
                    "-F", "babel.cfg", *KEYWORDS, "-o", str(pot), "."], cwd=ROOT, check=True)
    with open(pot, "rb") as fh:
        wanted = {msg.id for msg in read_po(fh) if msg.id}
    for lang in ("zh", "en"):
        with open(po_path(lang), "rb") as fh:
            have = {msg.id for msg in read_po(fh) if msg.id and msg.string}
        assert wanted - have == set(), lang


def test_chinese_is_the_default_and_the_navbar_switches_language(login, world):
    client = login(UNIT_A)
    page = text_of(client.get("/"))
    assert "欢迎" in page and "人员状态统计" in page and "报名" in page
    client.set_language("en")
    page = text_of(client.get("/"))
    assert "Welcome" in page and "Persons by status" in page and "欢迎" not in page
    client.set_language("zh")
    assert "欢迎" in text_of(client.get("/"))


def test_fab_strings_missing_from_its_own_catalogue_are_translated(login, world):
    page = login(UNIT_A).get("/unit/persons/list/").data.decode()
    assert "确定要删除此记录吗" in page  # FAB's delete confirmation, supplied by our catalogue


def test_enum_values_show_their_labels(login, world):
    page = text_of(login(UNIT_A).get("/unit/persons/list/"))
    assert "待支付" in page and "专业观众" in page and "awaiting_payment" not in page
    client = login(UNIT_A)
    client.set_language("en")
    page = text_of(client.get("/unit/persons/list/"))
    assert "Awaiting payment" in page and "Professional visitor" in page
