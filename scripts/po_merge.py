"""Merge translations into a catalogue: python scripts/po_merge.py zh FILE.py (a dict ZH)."""
from __future__ import annotations

import runpy
import sys

from babel.messages.pofile import read_po, write_po
from i18n import po_path

lang, source = sys.argv[1], sys.argv[2]
table = runpy.run_path(source)["ZH" if lang == "zh" else "EN"]
with open(po_path(lang), "rb") as fh:
    catalog = read_po(fh, locale=lang)
filled = 0
for message in catalog:
    if message.id in table:
        message.string = table[message.id]
        message.flags.discard("fuzzy")
        filled += 1
with open(po_path(lang), "wb") as fh:
    write_po(fh, catalog, no_location=True, sort_output=True)
print(f"{filled} messages filled")
