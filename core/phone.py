"""Mobile numbers: parsed and validated with Google's libphonenumber, stored in E.164."""

from __future__ import annotations

import phonenumbers

from core.errors import DomainError


def phone_normalize(*, raw: str, region: str | None = None, field: str = "phone") -> str:
    """Return `raw` in E.164, or raise a field error.

    A number with a leading + needs no region; a national one is read in `region` (ISO 3166 alpha-2).
    Only numbers that libphonenumber can dial as mobiles are accepted: a code sent by SMS to a landline
    would never arrive.
    """
    text = (raw or "").strip()
    if not text:
        raise DomainError.for_field(field, "A mobile number is required.", code="invalid_phone")
    if len(text) > 32:
        raise DomainError.for_field(field, "That is not a phone number.", code="invalid_phone")
    try:
        number = phonenumbers.parse(text, None if text.startswith("+") else (region or None))
    except phonenumbers.NumberParseException:
        hint = (
            ""
            if region or text.startswith("+")
            else " Give it in international form, +<country code>…"
        )
        raise DomainError.for_field(
            field, f"That is not a valid mobile number.{hint}", code="invalid_phone"
        ) from None
    if not phonenumbers.is_valid_number(number):
        raise DomainError.for_field(
            field, "That is not a valid mobile number.", code="invalid_phone"
        )
    kind = phonenumbers.number_type(number)
    if kind not in (
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    ):
        raise DomainError.for_field(field, "That number cannot receive SMS.", code="not_a_mobile")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def phone_mask(e164: str) -> str:
    """`+96550001234` → `+965 ••••1234`: the country code and the last four digits, nothing more."""
    try:
        number = phonenumbers.parse(e164, None)
        country = f"+{number.country_code}"
        national = str(number.national_number)
    except phonenumbers.NumberParseException:
        country, national = "", e164.lstrip("+")
    return f"{country} ••••{national[-4:]}".strip()


def phone_candidates(*, term: str, countries: set[str]) -> set[str]:
    """Every E.164 number `term` may be: as written (+965 5000 1234, 0096550001234), as a national
    number of one of `countries` (5000 1234 in Kuwait, 010 0123 4567 in Egypt), or as digits with
    the country code but no + (96550001234)."""
    found: set[str] = set()
    digits = "".join(ch for ch in term if ch.isdigit())
    if len(digits) < 6:
        return found
    attempts = [(term, country) for country in sorted(countries)] or [(term, None)]
    if not term.startswith("+"):
        attempts.append((f"+{digits}", None))
        if digits.startswith("00"):
            attempts.append((f"+{digits[2:]}", None))
    for raw, region in attempts:
        try:
            found.add(phone_normalize(raw=raw, region=region))
        except DomainError:
            continue
    return found
