"""How a phone caller is named in a room: display name, else the number, masked by policy."""

from __future__ import annotations

HIDDEN_NAME = "Phone caller"


def mask_number(number: str) -> str:
    """Keep the country/area start and the last two digits: "+15550100" -> "+155*****00"."""
    digits = [i for i, ch in enumerate(number) if ch.isdigit()]
    if len(digits) <= 4:
        return "*" * len(number)
    keep_head = 3 if len(digits) > 7 else 1
    hidden = set(digits[keep_head:-2])
    return "".join("*" if i in hidden else ch for i, ch in enumerate(number))


def caller_name(display: str | None, number: str | None, policy: str) -> str:
    """The participant name for a caller. `policy` is the number's display policy:
    "show" (the number as is), "mask" (middle digits hidden) or "hide" (no number)."""
    if display:
        name = display.strip().strip('"').strip()
        if name:
            return name[:64]
    if not number or number.lower() in ("anonymous", "unknown") or policy == "hide":
        return HIDDEN_NAME
    if policy == "show":
        return number[:32]
    return mask_number(number[:32])
