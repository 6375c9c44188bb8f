"""Events the API itself adds to the log of live events (`wa:events`): what no session process can say.

Today one: a deleted session (`session_deleted`), said after `DELETE /sessions/{id}` so that every open
client of the user, through any API process, drops the number without reloading. Its entry carries the
user id (the session's row, through which the hub finds an owner, is gone) and is indexed under the user
(`kernel.event_index.user_index`: a resume reads it there); the hub routes by it and leaves it out of the
frame. Redis being down loses the announcement (logged): the deletion stands, and a
client learns it on its next reload.
"""

from __future__ import annotations

import itertools
import json
import logging
import secrets

from redis.asyncio import Redis
from redis.exceptions import RedisError

from api import eventlog
from kernel.event_index import user_index
from kernel.wire import JSON, event_fields

log = logging.getLogger(__name__)

SESSION_DELETED = "session_deleted"
OWNER_FIELD = "userId"  # in the entry's data only; never in the frame


class Announcer:
    """Adds the API's own events to the log, as one producer (its seqs let readers drop copies)."""

    def __init__(self, client: Redis) -> None:
        self._client = client
        self._producer = f"api-{secrets.token_hex(6)}"
        self._seq = itertools.count(1)

    async def session_deleted(self, user_id: str, session_id: str) -> None:
        body = json.dumps({OWNER_FIELD: user_id}, separators=(",", ":"))
        fields = event_fields(session_id, SESSION_DELETED, body, self._producer, next(self._seq))
        try:
            await eventlog.append(self._client, user_index(user_id), fields)
        except (RedisError, OSError) as err:
            log.warning("session %s: deleted, but could not tell open clients (%s)", session_id, err)


def routed(kind: str, payload: JSON) -> tuple[str | None, JSON]:
    """For an entry the API added: the user it goes to, and the frame's payload without the owner."""
    if kind != SESSION_DELETED:
        return None, payload
    owner = payload.get(OWNER_FIELD)
    return (owner if isinstance(owner, str) else None), {}
