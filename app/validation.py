"""Checks of codes and numbers people type: USCC, ID documents, mobile numbers.

Each function returns the normalised value or raises ValidationFailed with a translated message.
"""
from __future__ import annotations

import re

import phonenumbers
from flask_babel import lazy_gettext as _l
from stdnum.cn import ric, uscc

from app.models import IdType


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


def normalise_id_number(id_type: IdType | str, value: str | None) -> str:
    """Validate an ID document number for its type; returns it upper-case without spaces."""
    id_type = IdType(id_type)
    number = re.sub(r"[\s-]", "", value or "").upper()
    if not number:
        raise ValidationFailed(_l("Enter the ID document number."))
    if id_type is IdType.mainland_id:
        if not ric.is_valid(number):
            raise ValidationFailed(_l("This mainland ID card number is not valid."))
        return ric.compact(number)
    if id_type is IdType.foreign_permanent_id:
        # Old cards: 3-letter country code + 12 digits; 2023 cards: 18 digits starting with 9,
        # with the same check digit as the mainland ID card.
        if re.match(r"^[A-Z]{3}\d{12}$", number):
            return number
        if re.match(r"^9\d{16}[\dX]$", number) and ric.calc_check_digit(number) == number[-1]:
            return number
        raise ValidationFailed(_l("This permanent residence ID number is not valid."))
    pattern, message = _ID_FORMATS[id_type]
    if not pattern.match(number):
        raise ValidationFailed(message)
    return number


def normalise_mobile(value: str | None, region: str = "CN") -> str:
    """A mobile number in E.164 form (+8613812345678); mainland numbers need no prefix."""
    raw = (value or "").strip()
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
