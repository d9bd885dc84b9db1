"""Checks of codes and numbers people type: USCC, ID documents, mobile numbers.

Each function returns the normalised value or raises ValidationFailed with a translated message.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date

import phonenumbers
from flask_babel import lazy_gettext as _l
from stdnum.cn import ric, uscc

from app.clock import today_shanghai
from app.models import Gender, IdType


class ValidationFailed(ValueError):
    def __init__(self, message) -> None:
        super().__init__(str(message))
        self.message = message


# GB 32100-2015: registering authority (1st char) and entity type (2nd char).
_USCC_AUTHORITY = "123456789ANY"
_USCC_RE = re.compile(r"^[%s][1-9]\d{6}[0-9A-HJ-NPQRTUWXY]{10}$" % _USCC_AUTHORITY)


def normalise_uscc(value: str | None) -> str:
    """Validate a Unified Social Credit Code and return it upper-case without spaces.

    python-stdnum's `cn.uscc` checks the check digit but refuses codes of the A, N and Y
    registering authorities; those are real codes, so the format is checked here and the
    check digit with stdnum's own calculation.
    """
    code = uscc.compact(value or "")
    if len(code) != 18:
        raise ValidationFailed(_l("A unified social credit code has 18 characters."))
    if not _USCC_RE.match(code):
        raise ValidationFailed(_l("This is not a valid unified social credit code."))
    if code[-1] != uscc.calc_check_digit(code[:17]):
        raise ValidationFailed(
            _l("The check digit of this unified social credit code is wrong.")
        )
    return code


_ID_FORMATS = {
    IdType.hk_macau_permit: (re.compile(r"^[HM]\d{8}(\d{2})?$"),
                             _l("A Hong Kong/Macau permit number is H or M followed by 8 or "
                                "10 digits.")),
    IdType.taiwan_permit: (re.compile(r"^(\d{8}|\d{10}|[A-Z]\d{9})$"),
                           _l("A Taiwan permit number has 8 or 10 digits.")),
    IdType.passport: (re.compile(r"^[A-Z0-9]{5,20}$"),
                      _l("A passport number has 5 to 20 letters and digits.")),
}

# GB/T 2260 province-level codes (the first two digits of an address code), including 71
# Taiwan, 81 Hong Kong and 82 Macau; the same list as python-stdnum's cn/loc.dat.
PROVINCE_CODES = frozenset(
    "11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46 50 51 52 53 54 "
    "61 62 63 64 65 71 81 82".split())
# The address codes of residence permits for Hong Kong, Macau and Taiwan residents.
RESIDENCE_PERMIT_CODES = ("810000", "820000", "830000")
# No one older than this is registered: an older birth date is a typing error.
MAX_AGE_YEARS = 120

_GB11643_RE = re.compile(r"^\d{17}[\dX]$")


@dataclass(frozen=True)
class IdDocument:
    """An ID document number as checked: the number, and what it tells (None: it does not)."""

    number: str
    birth_date: date | None = None
    gender: Gender | None = None


def normalise_text(value: str | None) -> str:
    """What Chinese input methods type, read as meant: full-width digits, letters and spaces
    (NFKC) become their ASCII forms."""
    return unicodedata.normalize("NFKC", value or "")


def _check_birth_date(digits: str, today: date) -> date:
    """The YYYYMMDD birth date of a GB 11643-style number: a real day, not in the future,
    not more than MAX_AGE_YEARS ago."""
    try:
        born = date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        raise ValidationFailed(_l("The birth date in this ID number (%(digits)s) is not a real "
                                  "date.", digits=digits)) from None
    if born > today:
        raise ValidationFailed(_l("The birth date in this ID number (%(date)s) is in the "
                                  "future.", date=born.isoformat()))
    try:
        oldest = today.replace(year=today.year - MAX_AGE_YEARS)
    except ValueError:            # 29 February
        oldest = today.replace(year=today.year - MAX_AGE_YEARS, day=28)
    if born < oldest:
        raise ValidationFailed(_l("The birth date in this ID number (%(date)s) is more than "
                                  "%(years)d years ago.", date=born.isoformat(),
                                  years=MAX_AGE_YEARS))
    return born


def _read_gb11643(number: str, invalid, wrong_check, today: date) -> IdDocument:
    """An 18-character number laid out as GB 11643: 6-digit address code, birth date, 3-digit
    sequence (odd for men) and the MOD 11-2 check character."""
    if not _GB11643_RE.match(number):
        raise ValidationFailed(invalid)
    if number[-1] != ric.calc_check_digit(number):
        raise ValidationFailed(wrong_check)
    born = _check_birth_date(number[6:14], today)
    gender = Gender.male if int(number[16]) % 2 else Gender.female
    return IdDocument(number, born, gender)


def read_id_document(id_type: IdType | str, value: str | None,
                     today: date | None = None) -> IdDocument:
    """Validate an ID document number for its type (docs/identity-documents.md): the number
    upper-case without spaces, and the birth date and gender it carries, if any."""
    id_type = IdType(id_type)
    number = re.sub(r"[\s-]", "", normalise_text(value)).upper()
    if not number:
        raise ValidationFailed(_l("Enter the ID document number."))
    today = today or today_shanghai()
    if id_type is IdType.mainland_id:
        document = _read_gb11643(
            number, _l("A mainland ID card number has 18 digits (the last may be X)."),
            _l("This mainland ID card number is not valid: its check digit (the last "
               "character) is wrong."), today)
        if number[:6] in RESIDENCE_PERMIT_CODES:
            raise ValidationFailed(_l("This is the number of a residence permit for Hong "
                                      "Kong, Macau and Taiwan residents: choose that ID "
                                      "document."))
        # The address code is where the number was issued, not where the holder was born:
        # any code of a real province is accepted, whether or not the district existed in
        # the birth year or is in python-stdnum's table yet.
        if number[:2] not in PROVINCE_CODES:
            raise ValidationFailed(_l("This mainland ID card number does not start with a "
                                      "province code."))
        return document
    if id_type is IdType.hmt_residence_permit:
        document = _read_gb11643(
            number, _l("A residence permit number for Hong Kong, Macau and Taiwan residents "
                       "has 18 digits (the last may be X)."),
            _l("This residence permit number is not valid: its check digit (the last "
               "character) is wrong."), today)
        if number[:6] not in RESIDENCE_PERMIT_CODES:
            raise ValidationFailed(_l("A residence permit number for Hong Kong, Macau and "
                                      "Taiwan residents starts with 810000, 820000 or "
                                      "830000."))
        return document
    if id_type is IdType.foreign_permanent_id:
        # Old cards: 3-letter country code + 12 digits; 2023 cards: 18 digits starting with 9,
        # laid out and checked like the mainland ID card.
        if re.match(r"^[A-Z]{3}\d{12}$", number):
            return IdDocument(number)
        if number.startswith("9") and len(number) == 18:
            return _read_gb11643(
                number, _l("This permanent residence ID number is not valid."),
                _l("This permanent residence ID number is not valid: its check digit (the "
                   "last character) is wrong."), today)
        raise ValidationFailed(_l("This permanent residence ID number is not valid."))
    pattern, message = _ID_FORMATS[id_type]
    if not pattern.match(number):
        raise ValidationFailed(message)
    return IdDocument(number)


def normalise_id_number(id_type: IdType | str, value: str | None) -> str:
    """Validate an ID document number for its type; returns it upper-case without spaces."""
    return read_id_document(id_type, value).number


def normalise_mobile(value: str | None, region: str = "CN") -> str:
    """A mobile number in E.164 form (+8613812345678); mainland numbers need no prefix."""
    raw = normalise_text(value).strip()
    if not raw:
        raise ValidationFailed(_l("Enter a mobile number."))
    try:
        parsed = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        raise ValidationFailed(_l("This is not a valid mobile number.")) from None
    if not phonenumbers.is_valid_number(parsed):
        raise ValidationFailed(_l("This is not a valid mobile number."))
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def normalise_username(value: str | None) -> str:
    """An app login: an e-mail address (lower-case) or a mobile number (E.164, as stored for
    every mobile in the system, so the same number cannot sign up twice in two spellings)."""
    raw = (value or "").strip()
    if "@" in raw:
        if not _EMAIL_RE.match(raw) or len(raw) > 128:
            raise ValidationFailed(_l("This is not a valid e-mail address."))
        return raw.lower()
    try:
        return normalise_mobile(raw)
    except ValidationFailed:
        raise ValidationFailed(_l("Sign up with a mobile number or an e-mail address.")) from None


def check_password(password: str, username: str) -> None:
    """At least 8 characters, letters and digits, and not the (normalised) login itself."""
    if len(password) < 8:
        raise ValidationFailed(_l("The password must have at least 8 characters."))
    if not (re.search(r"[A-Za-z]", password) and re.search(r"\d", password)):
        raise ValidationFailed(_l("The password must contain both letters and digits."))
    logins = {username.lower().lstrip("+")}
    if username.startswith("+"):
        # A mobile login as people type it: without the country code.
        logins.add(str(phonenumbers.parse(username).national_number))
    if any(login in password.lower() for login in logins):
        raise ValidationFailed(_l("The password must not contain the login."))
