"""The Redis side of `cluster.node`: the Lua scripts (claim, release, move a claim) and the
parsing of what Redis holds (a heartbeat's JSON, a URL without its password)."""

from __future__ import annotations

import json

from cluster.logic import NodeBeat

__all__ = ["CLAIM", "MOVE", "RELEASE", "beat_of", "redact", "text_of"]

CLAIM = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local owner = string.match(cur, '^(%S+)')
  if owner == ARGV[1] then return cur end
  if redis.call('EXISTS', ARGV[2] .. owner) == 1 then return cur end
end
local token = redis.call('INCR', KEYS[2])
local value = ARGV[1] .. ' ' .. token
redis.call('SET', KEYS[1], value)
redis.call('SADD', KEYS[3], ARGV[3])
return value
"""
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[2])
  return 1
end
return 0
"""
# KEYS: room, fence; ARGV: this node's "NODE TOKEN", the target node, the node key prefix
MOVE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return false end
if redis.call('EXISTS', ARGV[3] .. ARGV[2]) == 0 then return false end
local token = redis.call('INCR', KEYS[2])
local value = ARGV[2] .. ' ' .. token
redis.call('SET', KEYS[1], value)
return value
"""


def beat_of(text: str | None) -> NodeBeat | None:
    try:
        data = json.loads(text) if text else None
        if not isinstance(data, dict):
            return None
        return NodeBeat(id=str(data["id"]), beat=float(data["beat"]),
                        load=float(data.get("load", 0.0)), rooms=int(data.get("rooms", 0)),
                        public_url=str(data.get("public_url", "")),
                        accepting=bool(data.get("accepting", True)),
                        sip=str(data.get("sip", "")))  # fmt: skip
    except (ValueError, KeyError, TypeError):
        return None


def redact(url: str) -> str:
    """The Redis URL without a password."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = rest.split("@", 1)[1]
    return f"{scheme}{sep}{rest}"


def text_of(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
