"""Recordings: the room mix and every speaker's own track, from the bridge's packets."""
