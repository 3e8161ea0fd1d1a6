"""Dialled numbers: normalisation to E.164 form, matching candidates, country and formatting.

- Visual separators (spaces, '-', '.', '(', ')', '/') are dropped; a leading "00" becomes "+".
- A number with "+" is E.164: "+" then 1 to 15 digits, the first not 0.
- A number without "+" is kept as given (an extension, or a carrier that strips the "+"), and
  matched both as given and as "+" followed by its digits.
"""

from __future__ import annotations

from dialplan.models import InvalidInput

__all__ = [
    "COUNTRY_PREFIXES",
    "InvalidNumber",
    "candidates",
    "country_of",
    "format_number",
    "normalise",
]

MAX_DIGITS = 15  # E.164

# Calling code -> ISO 3166 alpha-2 of the main country using it. Codes are prefix-free, so the
# longest match is the only match. Shared codes (+1, +7) map to their largest member.
COUNTRY_PREFIXES: dict[str, str] = {
    "1": "US", "7": "RU", "20": "EG", "27": "ZA", "30": "GR", "31": "NL", "32": "BE",
    "33": "FR", "34": "ES", "36": "HU", "39": "IT", "40": "RO", "41": "CH", "43": "AT",
    "44": "GB", "45": "DK", "46": "SE", "47": "NO", "48": "PL", "49": "DE", "51": "PE",
    "52": "MX", "54": "AR", "55": "BR", "56": "CL", "57": "CO", "60": "MY", "61": "AU",
    "62": "ID", "63": "PH", "64": "NZ", "65": "SG", "66": "TH", "81": "JP", "82": "KR",
    "84": "VN", "86": "CN", "90": "TR", "91": "IN", "92": "PK", "234": "NG", "254": "KE",
    "351": "PT", "352": "LU", "353": "IE", "354": "IS", "356": "MT", "357": "CY",
    "358": "FI", "359": "BG", "370": "LT", "371": "LV", "372": "EE", "380": "UA",
    "385": "HR", "386": "SI", "420": "CZ", "421": "SK", "852": "HK", "886": "TW",
    "966": "SA", "971": "AE", "972": "IL",
}  # fmt: skip

_SEPARATORS = str.maketrans("", "", " \t-.()/\u00a0")


class InvalidNumber(InvalidInput):
    """The text is not a phone number."""


def normalise(raw: str) -> str:
    """The stored/matched form of a number; InvalidNumber when it is not one.

    A "tel:" prefix and URI parameters (";phone-context=...") are dropped.
    """
    text = raw.strip()
    if text[:4].lower() == "tel:":
        text = text[4:]
    text = text.split(";", 1)[0].translate(_SEPARATORS)
    if text.startswith("00"):
        text = "+" + text[2:]
    plus = text.startswith("+")
    digits = text[1:] if plus else text
    if not digits or not digits.isascii() or not digits.isdigit():
        raise InvalidNumber(f"number: expected digits with an optional leading '+', got {raw!r}")
    if len(digits) > MAX_DIGITS:
        raise InvalidNumber(f"number: at most {MAX_DIGITS} digits")
    if plus and digits[0] == "0":
        raise InvalidNumber("number: a country code never starts with 0")
    return text


def candidates(raw: str) -> list[str]:
    """The stored forms a dialled number may match, best first ([] if it is no number)."""
    try:
        number = normalise(raw)
    except InvalidNumber:
        return []
    if number.startswith("+"):
        return [number]
    return [number, "+" + number] if number[0] != "0" else [number]


def _split_prefix(number: str) -> tuple[str, str] | None:
    if not number.startswith("+"):
        return None
    digits = number[1:]
    for size in (1, 2, 3):
        if digits[:size] in COUNTRY_PREFIXES:
            return digits[:size], digits[size:]
    return None


def country_of(number: str) -> str | None:
    """The ISO country of a normalised E.164 number, from the small table; None if unknown."""
    split = _split_prefix(number)
    return COUNTRY_PREFIXES[split[0]] if split else None


def format_number(number: str) -> str:
    """A readable form of a normalised number: "+15550100" -> "+1 555 0100".

    The national part ends in a group of four; what comes before is one group when it has up
    to four digits, else groups of three. Numbers with an unknown calling code, and numbers
    without "+", are returned unchanged.
    """
    split = _split_prefix(number)
    if split is None:
        return number
    code, national = split
    head, tail = national[:-4], national[-4:]
    groups: list[str] = []
    while len(head) > 4:
        groups.append(head[:3])
        head = head[3:]
    return " ".join(g for g in [f"+{code}", *groups, head, tail] if g)
