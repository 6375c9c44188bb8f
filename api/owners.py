"""Who owns each session, as the database says, remembered: the ownership check of every session route
and the routing of every live event would otherwise cost a query each (~40 % of a send's API time).

A session's owner never changes and its id is never reused, so a known owner stays true until the
session is deleted. A deletion through this process forgets it at once; one through another API process
is noticed when the session's actor is gone (`recheck`). An id the database does not know is remembered
as unknown only briefly (`unknown_ttl_s`): its row may be being created by another API process.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from api.database import Database
from persistence import repo

MAX_KNOWN = 100_000
UNKNOWN_TTL_S = 5.0


class SessionOwners:
    def __init__(
        self, db: Database, *, max_known: int = MAX_KNOWN, unknown_ttl_s: float = UNKNOWN_TTL_S
    ) -> None:
        self._db = db
        self._max_known = max_known
        self._unknown_ttl_s = unknown_ttl_s
        self._known: OrderedDict[str, str] = OrderedDict()
        self._unknown: dict[str, float] = {}  # session id -> monotonic time until which it stays unknown

    async def owner(self, session_id: str) -> str | None:
        """The owning user id, or None for a session that does not exist (ServiceUnavailable: no database)."""
        owner = self._known.get(session_id)
        if owner is not None:
            self._known.move_to_end(session_id)
            return owner
        if self._unknown.get(session_id, 0.0) > time.monotonic():
            return None
        return await self.recheck(session_id)

    async def recheck(self, session_id: str) -> str | None:
        """Ask the database again, whatever is remembered."""
        owner = await self._db.run(repo.session_owner, session_id)
        if owner is None:
            self.forget(session_id)
            self._expire_unknown()
            self._unknown[session_id] = time.monotonic() + self._unknown_ttl_s
        else:
            self.learn(session_id, owner)
        return owner

    def learn(self, session_id: str, owner: str) -> None:
        self._unknown.pop(session_id, None)
        self._known[session_id] = owner
        self._known.move_to_end(session_id)
        while len(self._known) > self._max_known:
            self._known.popitem(last=False)

    def forget(self, session_id: str) -> None:
        self._known.pop(session_id, None)

    def _expire_unknown(self) -> None:
        now = time.monotonic()
        if len(self._unknown) > 1000:
            self._unknown = {sid: until for sid, until in self._unknown.items() if until > now}
