from gateway.callerid import HIDDEN_NAME, caller_name, mask_number


def test_mask_keeps_start_and_end() -> None:
    assert mask_number("+15550100") == "+155***00"
    assert mask_number("1234567") == "1****67"
    assert mask_number("123") == "***"


def test_policies_and_display_name() -> None:
    assert caller_name("Alice", "+15550100", "hide") == "Alice"
    assert caller_name(None, "+15550100", "show") == "+15550100"
    assert caller_name(None, "+15550100", "mask") == "+155***00"
    assert caller_name('""', "+15550100", "hide") == HIDDEN_NAME
    assert caller_name(None, "anonymous", "show") == HIDDEN_NAME
    assert caller_name(None, None, "mask") == HIDDEN_NAME
