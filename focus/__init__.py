"""The focus: conferences, participants, roles and moderation (Jicofo's job)."""

from focus.conference import (
    Focus,
    FocusEvent,
    Forbidden,
    ParticipantInfo,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantMuted,
    ParticipantUpdated,
    UnknownParticipant,
)

__all__ = [
    "Focus",
    "FocusEvent",
    "Forbidden",
    "ParticipantInfo",
    "ParticipantJoined",
    "ParticipantLeft",
    "ParticipantMuted",
    "ParticipantUpdated",
    "UnknownParticipant",
]
