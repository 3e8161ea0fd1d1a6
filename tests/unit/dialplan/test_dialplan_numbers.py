"""E.164 normalisation, match candidates, country derivation and formatting."""

from __future__ import annotations

import pytest

from dialplan.numbers import InvalidNumber, candidates, country_of, format_number, normalise


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+15550100", "+15550100"),
        ("+1 (555) 010-0100", "+15550100100"),
        ("0049 30 1234.5678", "+493012345678"),
        ("00441234", "+441234"),
        ("5550100", "5550100"),
        ("  +1/555/0100 ", "+15550100"),
        ("tel:+1-555-0100;phone-context=example.com", "+15550100"),
        ("+1\u00a0555\u00a00100", "+15550100"),
        ("0301234", "0301234"),  # a national number keeps its trunk prefix
    ],
)
def test_normalise(raw: str, expected: str) -> None:
    assert normalise(raw) == expected


@pytest.mark.parametrize(
    "raw", ["", "+", "00", "abc", "+1 555 CALL", "++1555", "+0123", "1" * 16, "+١٢٣", "12#"]
)
def test_normalise_rejects(raw: str) -> None:
    with pytest.raises(InvalidNumber):
        normalise(raw)


def test_fifteen_digits_is_the_e164_limit() -> None:
    assert normalise("+" + "1" * 15) == "+" + "1" * 15


def test_candidates() -> None:
    assert candidates("+15550100") == ["+15550100"]
    assert candidates("15550100") == ["15550100", "+15550100"]
    assert candidates("1-555-0100") == ["15550100", "+15550100"]
    assert candidates("001 555 0100") == ["+15550100"]
    assert candidates("0301234") == ["0301234"]  # "+0..." is never E.164
    assert candidates("conference") == []
    assert candidates("") == []


@pytest.mark.parametrize(
    ("number", "country"),
    [("+15550100", "US"), ("+442079460958", "GB"), ("+4930123", "DE"), ("+33123", "FR"),
     ("+31201234", "NL"), ("+353123", "IE"), ("+3581234", "FI"), ("+99912345", None),
     ("5550100", None)],
)  # fmt: skip
def test_country_of(number: str, country: str | None) -> None:
    assert country_of(number) == country


@pytest.mark.parametrize(
    ("number", "formatted"),
    [("+15550100", "+1 555 0100"), ("+12025550123", "+1 202 555 0123"),
     ("+4930123456", "+49 3012 3456"), ("+442079460958", "+44 207 946 0958"),
     ("+3312", "+33 12"), ("+3312345", "+33 1 2345"), ("+99912345", "+99912345"),
     ("5550100", "5550100")],
)  # fmt: skip
def test_format_number(number: str, formatted: str) -> None:
    assert format_number(number) == formatted
