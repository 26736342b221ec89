from __future__ import annotations

from decimal import Decimal

import pytest

from core.errors import DomainError
from core.money import money_format, money_parse, money_quantize
from core.phone import phone_mask, phone_normalize


def test_kwd_keeps_three_decimals():
    assert money_parse("1.500", minor_unit=3) == Decimal("1.500")
    assert str(money_parse("1.5", minor_unit=3)) == "1.500"
    assert money_quantize(Decimal("0.0125"), minor_unit=3) == Decimal("0.013")


@pytest.mark.parametrize(
    ("raw", "minor_unit", "code"),
    [
        ("1.5001", 3, "too_many_decimals"),
        ("1.505", 2, "too_many_decimals"),
        ("-1", 3, "amount_not_positive"),
        ("0", 2, "amount_not_positive"),
        ("NaN", 2, "invalid_amount"),
        ("Infinity", 2, "invalid_amount"),
        ("1e9", 2, "amount_too_large"),
        ("one", 2, "invalid_amount"),
    ],
)
def test_bad_amounts_are_refused_not_rounded(raw, minor_unit, code):
    with pytest.raises(DomainError) as caught:
        money_parse(raw, minor_unit=minor_unit)
    assert caught.value.code == code


def test_amounts_read_as_people_expect():
    assert (
        money_format(Decimal("1.5"), currency="KWD", minor_unit=3, language="ar", country="KW")
        == "1.500 د.ك."
    )
    assert (
        money_format(Decimal("100000"), currency="INR", minor_unit=2, language="hi", country="IN")
        == "₹1,00,000.00"
    )
    assert (
        money_format(Decimal("12.3"), currency="EGP", minor_unit=2, language="en", country="EG")
        == "EGP 12.30"
    )


def test_phone_masks_show_country_and_last_four_only():
    assert phone_mask("+96550001234") == "+965 ••••1234"
    assert phone_mask("+919812345670") == "+91 ••••5670"
    assert phone_normalize(raw="01001234567", region="EG") == "+201001234567"


@pytest.mark.parametrize("raw", ["1e25", "1E+999999", "99999999999999999999999999999.5"])
def test_amounts_beyond_any_bound_are_refused_before_arithmetic(raw):
    with pytest.raises(DomainError) as refused:
        money_parse(raw, minor_unit=3)
    assert refused.value.code == "amount_too_large"


@pytest.mark.parametrize("raw", ["-1e25", "-1E+30", "-0.001", "0"])
def test_amounts_at_or_below_zero_are_refused_whatever_their_size(raw):
    with pytest.raises(DomainError) as refused:
        money_parse(raw, minor_unit=3)
    assert refused.value.code == "amount_not_positive"
