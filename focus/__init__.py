"""The focus: conferences, participants, roles and moderation (Jicofo's job)."""

from focus.conference import (
    Focus,
    FocusEvent,
    ParticipantInfo,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantMuted,
    UnknownParticipant,
)

__all__ = [
    "Focus",
    "FocusEvent",
    "ParticipantInfo",
    "ParticipantJoined",
    "ParticipantLeft",
    "ParticipantMuted",
    "UnknownParticipant",
]
