"""Translation catalogues: `update` (extract from the sources, merge into zh and en),
`compile` (build the .mo files the app reads; they are never committed), `check` (every
message has a zh translation)."""
from __future__ import annotations

import os
import subprocess
import sys

from babel.messages.pofile import read_po, write_po

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRANSLATIONS = os.path.join(ROOT, "app", "translations")
POT = os.path.join(TRANSLATIONS, "messages.pot")
LANGS = ("zh", "en")
KEYWORDS = ["-k", "_l", "-k", "lazy_gettext", "-k", "gettext", "-k", "_", "-k", "ngettext:1,2"]


def pybabel(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "babel.messages.frontend", "-q", *args], cwd=ROOT,
                   check=True, stdout=subprocess.DEVNULL)


def po_path(lang: str) -> str:
    return os.path.join(TRANSLATIONS, lang, "LC_MESSAGES", "messages.po")


def update() -> None:
    pybabel("extract", "-F", "babel.cfg", *KEYWORDS, "--no-location", "--sort-output",
            "-o", POT, ".")
    for lang in LANGS:
        if os.path.exists(po_path(lang)):
            pybabel("update", "-i", POT, "-d", TRANSLATIONS, "-l", lang, "--no-fuzzy-matching",
                    "--ignore-obsolete")
        else:
            pybabel("init", "-i", POT, "-d", TRANSLATIONS, "-l", lang)
    # English source strings are their own English translation.
    with open(po_path("en"), "rb") as fh:
        catalog = read_po(fh, locale="en")
    for message in catalog:
        if message.id and not message.string:
            message.string = message.id
    with open(po_path("en"), "wb") as fh:
        write_po(fh, catalog, omit_header=False, no_location=True, sort_output=True)
    os.remove(POT)


def compile_() -> None:
    pybabel("compile", "-d", TRANSLATIONS, "--use-fuzzy")


def untranslated(lang: str = "zh") -> list[str]:
    with open(po_path(lang), "rb") as fh:
        catalog = read_po(fh, locale=lang)
    missing = []
    for message in catalog:
        if not message.id:
            continue
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if not all(strings) or message.fuzzy:
            missing.append(message.id if isinstance(message.id, str) else message.id[0])
    return missing


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "compile"
    if command == "update":
        update()
        missing = untranslated()
        print(f"{len(missing)} zh messages need a translation")
    elif command == "compile":
        compile_()
    elif command == "check":
        missing = untranslated()
        for msg in missing:
            print(f"untranslated: {msg!r}")
        sys.exit(1 if missing else 0)
    else:
        sys.exit(__doc__)
