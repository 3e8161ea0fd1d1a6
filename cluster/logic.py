"""The cluster's decisions, sans-I/O: every function takes `now` (seconds, one clock for all
nodes: Redis's own TIME) and plain data; cluster/node.py feeds them what Redis holds.

- A node beats every HEARTBEAT seconds; it is dead DEAD_AFTER seconds after its last beat
  (its key's TTL in Redis is the same figure, so the atomic claim script agrees).
- Its stress is Jitsi's idea on what this process carries: participants, phone legs and
  rooms, plus the joins of the last JOIN_WINDOW seconds counted double (a room that has just
  been placed is about to fill: without that correction every node would pick the same
  least-stressed node for every room started in the same second), over CAPACITY.
- A new room goes to the least stressed live node that takes rooms (ties: the lowest id).
- A room whose owner is dead is an orphan; the least stressed live node claims it (the
  claim is atomic in Redis: the script checks that the owner is still dead).
- A node gives a claim back when the room ends (people were here and none are left), and a
  claim nobody has used yet (a room just taken over, whose browsers are on their way back)
  after RELEASE_AFTER seconds.
- A draining node takes no new room (its beat says `accepting: false`, so `choose_node`
  skips it; a browser that arrives for a room it does not host is sent to the room's live
  owner, else to `drain_target`). It gives back each claim whose room is empty here at once
  (`drain_plan`); when the drain is forced, it also moves every room with people to the
  least stressed other node (`drain_moves`: spread, each room weighing its people).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = [
    "CAPACITY",
    "DEAD_AFTER",
    "HEARTBEAT",
    "JOIN_WINDOW",
    "RELEASE_AFTER",
    "Claims",
    "ClusterUnavailable",
    "DrainOrder",
    "JoinWindow",
    "NodeBeat",
    "Owner",
    "Placement",
    "alive_nodes",
    "choose_node",
    "drain_moves",
    "drain_plan",
    "drain_target",
    "orphans",
    "stress",
]

HEARTBEAT = 1.0
DEAD_AFTER = 3.0
# A live owner whose last beat is older than this is not pointed to (it may be dying: a
# browser sent there would find nothing): joins and hand-offs try again shortly instead.
STALE_AFTER = 2.0
JOIN_WINDOW = 10.0
RELEASE_AFTER = 15.0
CAPACITY = 100.0  # participants (or legs) a node carries at stress 1.0


def stress(*, participants: int, legs: int, rooms: int, recent_joins: int) -> float:
    """The node's load figure: 0 idle, 1.0 at CAPACITY (it may go beyond)."""
    weight = participants + legs + 0.25 * rooms + 2.0 * recent_joins
    return round(max(0.0, weight) / CAPACITY, 3)


class JoinWindow:
    """Join times of the last JOIN_WINDOW seconds (bounded: at most `limit` kept)."""

    def __init__(self, window: float = JOIN_WINDOW, limit: int = 10_000) -> None:
        self.window = window
        self._times: deque[float] = deque(maxlen=limit)

    def add(self, now: float) -> None:
        self._times.append(now)

    def count(self, now: float) -> int:
        while self._times and now - self._times[0] > self.window:
            self._times.popleft()
        return len(self._times)


@dataclass(frozen=True, slots=True)
class NodeBeat:
    """One node as its last heartbeat described it."""

    id: str
    beat: float  # when (Redis time)
    load: float = 0.0
    rooms: int = 0
    public_url: str = ""
    accepting: bool = True  # takes new rooms (false while draining)
    sip: str = ""  # "TRANSPORT:HOST:PORT" where other nodes hand phone calls to it

    def alive(self, now: float) -> bool:
        return now - self.beat < DEAD_AFTER


@dataclass(frozen=True, slots=True)
class Owner:
    """A room's entry in the room-to-node map: the node and the claim's fencing token."""

    node: str
    token: int

    def encode(self) -> str:
        return f"{self.node} {self.token}"

    @classmethod
    def decode(cls, text: str | bytes | None) -> Owner | None:
        if text is None:
            return None
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        node, _, token = text.partition(" ")
        if not node or not token.isdigit():
            return None
        return cls(node, int(token))


def alive_nodes(beats: Iterable[NodeBeat], now: float) -> list[NodeBeat]:
    return sorted((b for b in beats if b.alive(now)), key=lambda b: b.id)


def choose_node(beats: Iterable[NodeBeat], now: float) -> NodeBeat | None:
    """The least stressed live node that takes rooms; None when there is none."""
    candidates = [b for b in alive_nodes(beats, now) if b.accepting]
    if not candidates:
        return None
    return min(candidates, key=lambda b: (b.load, b.id))


def drain_target(beats: Iterable[NodeBeat], now: float, exclude: str) -> NodeBeat | None:
    """Where a draining node `exclude` sends a new room: the least stressed other live node
    that takes rooms; None when there is none."""
    return choose_node((b for b in beats if b.id != exclude), now)


@dataclass(frozen=True, slots=True)
class DrainOrder:
    """An operator's order to drain a node (`switchboard:draining` in Redis): its rooms
    move when they become empty, or at once when `force`."""

    force: bool = False

    def encode(self) -> str:
        return "force" if self.force else "drain"

    @classmethod
    def decode(cls, text: str | bytes | None) -> DrainOrder | None:
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        if text not in ("drain", "force"):
            return None  # none (or unreadable): not draining
        return cls(force=text == "force")


def drain_plan(claimed: Iterable[str], live_rooms: Iterable[str], *,
               force: bool) -> tuple[list[str], list[str]]:
    """A draining node's claims: (to give back now: rooms nobody is in here, so the next
    join places them elsewhere; to move now: rooms with people here, when forced)."""
    live = set(live_rooms)
    claims = sorted(set(claimed))
    release = [room for room in claims if room not in live]
    move = [room for room in claims if room in live] if force else []
    return release, move


def drain_moves(rooms: Mapping[str, int], beats: Iterable[NodeBeat], now: float,
                exclude: str) -> dict[str, str]:
    """{room: node} for a forced drain of `exclude`: each room (largest first) to the least
    stressed other live node that takes rooms, counting the people already sent there; {}
    when no node can take them."""
    loads = {b.id: b.load for b in alive_nodes(beats, now) if b.accepting and b.id != exclude}
    out: dict[str, str] = {}
    if not loads:
        return out
    for room in sorted(rooms, key=lambda r: (-rooms[r], r)):
        node = min(loads, key=lambda n: (loads[n], n))
        out[room] = node
        loads[node] += max(1, rooms[room]) / CAPACITY
    return out


def orphans(room_map: Mapping[str, Owner], beats: Iterable[NodeBeat], now: float) -> list[str]:
    """Rooms whose owner is dead (or unknown), sorted."""
    live = {b.id for b in alive_nodes(beats, now)}
    return sorted(room for room, owner in room_map.items() if owner.node not in live)


@dataclass
class Claims:
    """This node's claims: room -> fencing token, when it was claimed, whether people have
    been in it here since (`used`)."""

    tokens: dict[str, int] = field(default_factory=dict)
    last_active: dict[str, float] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)

    def claimed(self, room: str, token: int, now: float) -> None:
        self.tokens[room] = token
        self.last_active[room] = now

    def forget(self, room: str) -> None:
        self.tokens.pop(room, None)
        self.last_active.pop(room, None)
        self.used.discard(room)

    def unclaimed(self, live_rooms: Iterable[str]) -> list[str]:
        """Rooms with participants here that this node has no claim for."""
        return sorted(set(live_rooms) - set(self.tokens))

    def to_release(self, live_rooms: Iterable[str], now: float) -> list[str]:
        """Claims to give back: rooms that ended here (people were here, none are left), and
        rooms nobody has come to within RELEASE_AFTER seconds of the claim."""
        live = set(live_rooms)
        for room in live & set(self.tokens):
            self.last_active[room] = now
            self.used.add(room)
        return sorted(room for room in self.tokens if room not in live and (
            room in self.used or now - self.last_active[room] >= RELEASE_AFTER))


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a room's conference lives: here, or on `node` (reachable at `public_url`,
    and for phone calls at `sip`)."""

    node: str
    public_url: str
    here: bool
    sip: str = ""
    fresh: bool = True  # the owner beat within STALE_AFTER (else: try again shortly)


class ClusterUnavailable(ConnectionError):
    """Redis cannot be reached: this node takes no new room."""
