"""Generating PINs: unpredictable (the `secrets` module) and never trivially guessable."""

from __future__ import annotations

import itertools
import secrets

from dialplan.models import PIN_MAX_LENGTH, PIN_MIN_LENGTH

__all__ = ["generate_pin", "is_trivial_pin"]

_DIGITS = "0123456789"
_FIRST_DIGITS = "123456789"  # no leading zero: the conference mapper reports PINs as integers


def is_trivial_pin(pin: str) -> bool:
    """True for PINs a guesser tries first.

    Those are a short block repeated ("11111111", "12121212", "12341234") and runs that step
    by +1 or -1 modulo 10 ("12345678", "87654321", "78901234").
    """
    n = len(pin)
    for period in range(1, n // 2 + 1):
        if n % period == 0 and pin == pin[:period] * (n // period):
            return True
    steps = {(int(b) - int(a)) % 10 for a, b in itertools.pairwise(pin)}
    return steps in ({1}, {9})


def generate_pin(length: int) -> str:
    """A random PIN of `length` digits, not starting with 0 and not trivial."""
    if not PIN_MIN_LENGTH <= length <= PIN_MAX_LENGTH:
        raise ValueError(f"PIN length: expected {PIN_MIN_LENGTH} to {PIN_MAX_LENGTH}")
    for _ in range(1000):  # a trivial draw has probability < 1e-2 even for 4 digits
        pin = secrets.choice(_FIRST_DIGITS) + "".join(
            secrets.choice(_DIGITS) for _ in range(length - 1)
        )
        if not is_trivial_pin(pin):
            return pin
    raise RuntimeError("could not draw a non-trivial PIN")  # pragma: no cover
