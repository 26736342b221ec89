"""Money: Decimal amounts quantized to the currency's minor unit (KWD has 3 decimals, EGP 2).

Never a float. Formatting for people goes through Babel's CLDR data, in the reader's language and the
utility's country, so that Kuwaitis read `1.500 د.ك.` and Indians `₹1,00,000.00`.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from babel.core import Locale, UnknownLocaleError
from babel.numbers import format_currency

from core.errors import DomainError

_CODE_BEFORE_DIGIT = re.compile(r"([A-Z]{3})(?=\d)")


def minor_unit_exponent(minor_unit: int) -> Decimal:
    return Decimal(1).scaleb(-minor_unit)


def money_quantize(amount: Decimal | int | str, *, minor_unit: int) -> Decimal:
    """Round half up to the minor unit. For amounts we compute (charges, fines), not amounts we are given."""
    return Decimal(amount).quantize(minor_unit_exponent(minor_unit), rounding=ROUND_HALF_UP)


# An amount as a client may write it: ASCII digits, an optional fraction, an optional sign and
# exponent, which is the grammar of a JSON number ("1.500", 1.5, 15e-1, "-5"). Python's Decimal
# takes more (1_000, " Infinity", Arabic-Indic digits): those are refused, never guessed at.
PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def money_parse(
    raw: object, *, minor_unit: int, field: str = "amount", max_major: Decimal = Decimal("1000000")
) -> Decimal:
    """An amount a client gave us (text, or a JSON number the parser read as Decimal or int):
    refused, never rounded, if it has more decimals than the currency.

    1. Plain notation only (PLAIN_NUMBER): no underscores, no NaN or Infinity, ASCII digits. An
       exponent is read as written (15e-1 is 1.5); what it makes is bounded like any figure.
    2. Above zero and at most `max_major`, compared before any arithmetic: 1e25 (or 1e400 from a
       JSON number) has no room for 3 decimals in Decimal's 28 digits, and quantizing it would
       fail as a server error.
    3. At most the currency's decimals (1.5001 KWD is refused, not rounded).
    """
    text = str(raw).strip() if isinstance(raw, str | int | float | Decimal) else ""
    if isinstance(raw, bool) or not PLAIN_NUMBER.fullmatch(text):
        raise DomainError.for_field(field, "Give the amount as a number.", code="invalid_amount")
    try:
        amount = Decimal(text)
    except (InvalidOperation, ValueError):  # the pattern lets through nothing Decimal refuses
        raise DomainError.for_field(
            field, "Give the amount as a number.", code="invalid_amount"
        ) from None
    if amount <= 0:
        raise DomainError.for_field(
            field, "The amount must be above zero.", code="amount_not_positive"
        )
    if amount > max_major:
        raise DomainError.for_field(
            field, "The amount is larger than we accept.", code="amount_too_large"
        )
    if amount != amount.quantize(minor_unit_exponent(minor_unit), rounding=ROUND_HALF_UP):
        raise DomainError.for_field(
            field,
            f"At most {minor_unit} decimal places for this currency.",
            code="too_many_decimals",
        )
    return amount.quantize(minor_unit_exponent(minor_unit))


def money_digits(amount: Decimal | int | str, *, minor_unit: int) -> str:
    """`Decimal("100.000")` with 2 decimals → `100.00`: the figure as the currency writes it (EGP,
    INR and SAR have 2, KWD 3), for API fields and machine-read text. Never more digits than the
    currency has, never fewer; an amount with more is rounded half up."""
    return f"{money_quantize(amount, minor_unit=minor_unit):f}"


def money_text(amount: Decimal | int | str, *, currency: str, minor_unit: int) -> str:
    """`100.00 INR`: an amount with its currency code, for staff pages, logs and SMS texts that
    are not localised. Consumer-facing texts in the reader's language use money_format."""
    return f"{money_digits(amount, minor_unit=minor_unit)} {currency}"


def utility_money(amount: Decimal | int | str, utility) -> str:
    """money_text in a utility's currency (anything with `currency` and `currency_minor_unit`)."""
    return money_text(amount, currency=utility.currency, minor_unit=utility.currency_minor_unit)


def locale_for(language: str, country: str) -> Locale:
    """Babel's locale for a reader's language in a utility's country (ar_KW), else the language, else English."""
    for tag in (f"{language}_{country}", language):
        try:
            return Locale.parse(tag)
        except (UnknownLocaleError, ValueError):
            continue
    return Locale.parse("en")


def money_format(
    amount: Decimal, *, currency: str, minor_unit: int, language: str, country: str
) -> str:
    """`Decimal("1.5")`, KWD, ar, KW → `1.500 د.ك.`: the currency's own decimals, the reader's language."""
    locale = locale_for(language, country)
    # Our minor unit is data (the utility's row), so the pattern carries it rather than CLDR's table.
    pattern = locale.currency_formats["standard"].pattern.split(";")[0]
    decimals = "0" * minor_unit
    pattern = pattern.replace("0.00", f"0.{decimals}" if decimals else "0")
    text = format_currency(
        money_quantize(amount, minor_unit=minor_unit),
        currency,
        format=pattern,
        locale=locale,
        currency_digits=False,
    )
    text = text.replace("\u200f", "").replace("\xa0", " ")
    # CLDR's currency-spacing rule, which Babel leaves out: a letter code is not glued to digits.
    return _CODE_BEFORE_DIGIT.sub(r"\1 ", text)


def units_round(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half up (away from zero), in integers: exact at any size."""
    if numerator < 0:
        return -units_round(-numerator, denominator)
    return (2 * numerator + denominator) // (2 * denominator)


def units_allocate(total: int, weights: list[int], denominator: int) -> list[int]:
    """Split `total` whole units in proportion to the exact shares `weights[i] / denominator`
    (largest remainder, Hamilton's method): each part is its share rounded down or up, and the
    parts sum to `total` exactly. Ties go to the earlier part, so the split is reproducible.

    Used so that interval costs sum to their day's cost and days to their month's: each level is
    rounded once, at the currency's minor unit, and split among the level below.
    """
    parts = [weight // denominator for weight in weights]
    left = total - sum(parts)
    if left > 0:
        order = sorted(range(len(weights)), key=lambda i: (-(weights[i] % denominator), i))
        for i in order[:left]:
            parts[i] += 1
    elif left < 0:  # negative shares (a refund among charges): take back from the smallest rests
        order = sorted(range(len(weights)), key=lambda i: (weights[i] % denominator, i))
        for i in order[:-left]:
            parts[i] -= 1
    return parts
