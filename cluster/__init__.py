"""Nodes of one Switchboard service coordinated through Redis (issue 19).

- `cluster.logic`: the decisions, sans-I/O (time passed in): a node's stress figure, which
  nodes are alive, which node takes a new or orphaned room, which claims to give back.
- `cluster.node`: `ClusterNode`, the I/O: heartbeats, the room-to-node map with atomic
  claims (a Lua script with a fencing token), take-over of a dead node's rooms, the pub/sub
  channel between nodes, resync after a Redis reconnect.

Without `cluster.redis_url` nothing here runs. docs/internals.md describes the contract.
"""
