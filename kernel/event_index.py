"""The event log's index by owner: each entry of `wa:events` is also kept in its session's own stream.

A WebSocket resume (`api.hub_replay`) reads only the streams of the user's sessions (and the user's own
stream, where the API's announcements go) instead of the shared log of every user. Each entry is added by
one script (`APPEND`), atomically: to the shared log (trimmed to about `EVENTS_RETAINED`), then with the
same id and fields to its index stream, trimmed to the shared log's oldest id, then PUBLISHed on its
channel. The ids are the same in both, so a cursor means the same entry in each, and the shared log's
window (`api.eventlog.resumable`) is the index's.

`INDEXED_SINCE` holds the id of the first entry indexed since the log's history began: a cursor older than
it may have entries after it that no index holds (logged before the index existed), so it gets `resync`.
(Redis losing its data loses it too.) An index the shared log has fallen behind (the shared log alone was
deleted; its new ids are not above the index's last) is started anew rather than refusing the entry.

Import-light: the session processes (`actors.publisher`) and the API (`api.hub_announce`) both run it.
"""

from __future__ import annotations

INDEXED_SINCE = "wa:events:indexed-since"


def session_index(session_id: str) -> str:
    """The stream of one session's entries."""
    return f"wa:events:s:{session_id}"


def user_index(user_id: str) -> str:
    """The stream of the entries the API adds for one user (`session_deleted`)."""
    return f"wa:events:u:{user_id}"


# KEYS: the shared log, the index stream, INDEXED_SINCE. ARGV: the shared log's MAXLEN, the channel to
# PUBLISH on ("" for none), the message, then the entry's field/value pairs. Returns the entry's id.
APPEND = """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, 4))
local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1][1]
local added = redis.pcall('XADD', KEYS[2], 'MINID', '~', oldest, id, unpack(ARGV, 4))
if type(added) == 'table' and added.err then
  redis.call('DEL', KEYS[2])
  redis.call('XADD', KEYS[2], id, unpack(ARGV, 4))
end
redis.call('SET', KEYS[3], id, 'NX')
if ARGV[2] ~= '' then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return id
"""
