"""The search keys of a person's ID and mobile numbers: the exact lists' searches compare the
key of what was typed with the key stored beside the number (B-tree indexed), so "４４０１１３
２０１４１００５００１ｘ" finds 44011320141005001X and "+86 131-2345-6789" finds 13123456789,
and the numbers themselves are never read to search.

The numbers are sealed at rest (issue 17, app.pii) and the keys are keyed hashes (HMAC-SHA256
with PII_SEARCH_KEY), so the database holds neither a number nor a hash anyone without the key
could recompute from a guessed number.

A person's name has search tokens beside it (name_tokens), copied onto its registrations and
GIN indexed there with the delegation: a name search for one or two Chinese characters is then
an index lookup too."""
from __future__ import annotations

import re
import unicodedata

import phonenumbers

from app.pii import digest

# Spaces and dashes people put between groups of digits: after NFKC (full-width forms become
# ASCII) the hyphen, dashes, the minus sign and the katakana long-vowel mark IMEs offer.
_SEPARATORS = re.compile(r"[\s\-\u2010-\u2015\u2212\u30fc]")
# Mainland numbers are keyed by their national digits, the others in E.164.
_CHINA = 86


def _folded(value: str) -> str:
    """What input methods type, read as meant: full-width forms become ASCII (NFKC), and
    digits of any script (Arabic-Indic "٣", Devanagari "३"…) their 0-9."""
    text = unicodedata.normalize("NFKC", value)
    return "".join(str(unicodedata.decimal(ch)) if unicodedata.category(ch) == "Nd" else ch
                   for ch in text)


def _sealed(normalised: str) -> str:
    """The stored form of a normalised number: its keyed hash (app.pii.digest)."""
    return digest(normalised)


def normalised_id_number(value: str | None) -> str:
    """An ID document number as the search compares it: upper-case, without separators."""
    return _SEPARATORS.sub("", _folded(value or "")).upper()


def id_number_key(value: str | None) -> str | None:
    """The search key of an ID document number (None for no number)."""
    normalised = normalised_id_number(value)
    return _sealed(normalised) if normalised else None


def normalised_mobile(value: str | None) -> str | None:
    """A phone number as the search compares it: a mainland number as its digits without
    +86 / 0086 (13123456789), any other in E.164 (+447400123456); None when it cannot be a
    phone number at all."""
    text = _folded(value or "").strip()
    if not text:
        return None
    try:
        parsed = phonenumbers.parse(text, "CN")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    if parsed.country_code == _CHINA:
        return str(parsed.national_number)
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def mobile_key(value: str | None) -> str | None:
    """The search key of a phone number (None for no number, or one that is none)."""
    normalised = normalised_mobile(value)
    return _sealed(normalised) if normalised else None


# Where a name splits into words: white space (NFKC makes the ideographic and no-break spaces
# plain ones) and the middle dots of transliterated names (约翰·史密斯). Written out, not
# \\s, so the migration's SQL (c14b00000002) splits exactly here too.
NAME_SEPARATORS = " \t\n\r\f\v\u00b7\u2022\u30fb"
_NAME_WORDS = re.compile(f"[^{NAME_SEPARATORS}]+")


def _name_words(text: str) -> list[str]:
    """The words of a name or a typed search, as the tokens are cut from them: NFKC, then
    lower case one character at a time, which is what PostgreSQL's lower() and ILIKE do (no
    context-dependent final sigma; "İ" becomes "i"). casefold() would fold more ("ß" →
    "ss") than the ILIKE recheck does, and PostgreSQL 15 has no casefold to backfill with."""
    folded = "".join(ch.lower()[0] for ch in unicodedata.normalize("NFKC", text))
    return _NAME_WORDS.findall(folded)


def name_tokens(name: str | None) -> list[str]:
    """The search tokens stored beside a name (person.name_search, copied and GIN indexed on
    person_registration.name_search): every character and every pair of adjacent characters
    of each word, sorted by code point. Whatever text a name contains, the tokens of that text
    (name_search_tokens) are among these, so the index finds every name a "contains" search
    finds."""
    tokens: set[str] = set()
    for word in _name_words(name or ""):
        tokens.update(word)
        tokens.update(word[i:i + 2] for i in range(len(word) - 1))
    return sorted(tokens)


def name_search_tokens(text: str | None) -> list[str]:
    """The tokens a name must have to contain the typed text: a one-character word is
    itself, a longer one its pairs of adjacent characters (all of them must be present).
    Latin words are searched by their pairs too, not by stored prefixes: the pairs already
    narrow a search to few names, and prefixes would multiply the tokens stored per name."""
    tokens: set[str] = set()
    for word in _name_words(text or ""):
        tokens.update([word] if len(word) == 1
                      else (word[i:i + 2] for i in range(len(word) - 1)))
    return sorted(tokens)


def name_tokens_suffice(text: str) -> bool:
    """Whether having the typed text's tokens is the same as containing the text: so for one
    word of one or two characters (the token is the text itself), as names are stored NFKC;
    a longer word's pairs may all be in a name without the word, so it is compared too."""
    folded = "".join(ch.lower()[0] for ch in unicodedata.normalize("NFKC", text))
    return bool(folded) and len(folded) <= 2 and _name_words(text) == [folded]


def document_key(id_type: str, id_number: str) -> str:
    """PersonRegistration.id_key: the keyed hash of a document's type (its value) and number,
    which holds the per-edition uniqueness of a document."""
    return _sealed(f"{id_type}:{normalised_id_number(id_number)}")


def person_keys(id_number: str | None, mobile: str | None) -> dict[str, str | None]:
    """The key columns of a person with these numbers, as keyword arguments of `Person`."""
    return {"id_search_key": id_number_key(id_number), "mobile_search_key": mobile_key(mobile)}
