"""Focus.audio_receivers: who hears the room's audio through the bridge, as a gateway sees it."""

from __future__ import annotations

from focus import Focus


def test_browsers_count_muted_too_and_the_gateways_own_phones_do_not() -> None:
    focus = Focus()
    assert focus.audio_receivers("r", "gateway") == 0  # no conference
    p1 = focus.join("r", "phone", "+1", mixed_by="gateway")
    focus.join("r", "phone", "+2", mixed_by="gateway")
    assert focus.audio_receivers("r", "gateway") == 0
    b1 = focus.join("r", "browser", "Ann", audio=False)  # muted: still listens
    assert b1.muted and focus.audio_receivers("r", "gateway") == 1
    focus.join("r", "browser", "Bob", audio=True)
    assert focus.audio_receivers("r", "gateway") == 2
    assert focus.audio_receivers("other", "gateway") == 0
    focus.leave(b1.id)
    assert focus.audio_receivers("r", "gateway") == 1
    focus.leave(p1.id)
    assert focus.audio_receivers("r", "gateway") == 1


def test_phones_mixed_elsewhere_are_receivers() -> None:
    """A phone mixed by another gateway (another node's mixer) hears this gateway's callers
    through the bridge; so does a participant no gateway mixes."""
    focus = Focus()
    focus.join("r", "phone", "+1", mixed_by="gateway")
    focus.join("r", "phone", "+2", mixed_by="gateway@node-b")
    assert focus.audio_receivers("r", "gateway") == 1
    assert focus.audio_receivers("r", "gateway@node-b") == 1
    focus.join("r", "phone", "+3")
    assert focus.audio_receivers("r", "gateway") == 2
