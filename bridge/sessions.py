"""Every client session of the server, whatever its protocol, in one table.

The per-IP connection limit is applied here, so it counts RTMP, RTMPS and RTMPT (and later
WHIP/WHEP) sessions together; the HTTP API, the Redis commands and the metrics read and act on
sessions through it. A session is any object with the fields and ``kick`` of ``Session``.
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from collections.abc import Iterator
from typing import Protocol

from bridge.auth.policy import Network, address_allowed

log = logging.getLogger("bridge.sessions")

PUBLISHER = "publisher"
PLAYER = "player"


class Session(Protocol):
    """What the table needs from a session of any protocol."""

    id: str
    protocol: str  # rtmp, rtmps, rtmpt, rtmpts, ...
    ip: str
    channel: str
    role: str  # PUBLISHER, PLAYER or "" (not yet either)
    stream_id: str  # a publisher's stream id (from the callback, or our own)
    started_at: float  # wall-clock seconds

    @property
    def bytes_in(self) -> int: ...

    @property
    def bytes_out(self) -> int: ...

    def kick(self, reason: str) -> None:
        """End the session (a refusal where the protocol has one), logging ``reason``."""


class SessionTable:
    def __init__(self, *, max_per_ip: int, exempt: tuple[Network, ...] | None) -> None:
        self._sessions: dict[str, Session] = {}
        self._per_ip: Counter[str] = Counter()
        self._max_per_ip = max_per_ip
        self._exempt = exempt
        self._ids = itertools.count(1)
        # Totals of sessions that have closed, so the metrics' counters never go back.
        self.closed_bytes_in = 0
        self.closed_bytes_out = 0
        self.refused = 0

    def new_id(self, protocol: str) -> str:
        return f"{protocol}-{next(self._ids)}"

    def admit(self, ip: str) -> bool:
        """Whether one more session from ``ip`` fits the per-IP limit."""
        if address_allowed(ip, self._exempt):
            return True
        if self._per_ip[ip] < self._max_per_ip:
            return True
        self.refused += 1
        return False

    def add(self, session: Session) -> None:
        """Register a session that ``admit`` let in."""
        self._sessions[session.id] = session
        self._per_ip[session.ip] += 1

    def remove(self, session: Session) -> None:
        if self._sessions.pop(session.id, None) is None:
            return
        self._per_ip[session.ip] -= 1
        if self._per_ip[session.ip] <= 0:
            del self._per_ip[session.ip]
        self.closed_bytes_in += session.bytes_in
        self.closed_bytes_out += session.bytes_out

    def get(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._sessions.values()))

    def __len__(self) -> int:
        return len(self._sessions)

    def by_channel(self, channel: str) -> list[Session]:
        return [s for s in self._sessions.values() if s.channel == channel]

    def publisher(self, channel: str, stream_id: str | None = None) -> Session | None:
        for session in self._sessions.values():
            if session.channel == channel and session.role == PUBLISHER:
                if stream_id is None or session.stream_id == stream_id:
                    return session
        return None

    def count_by_protocol(self) -> Counter[str]:
        return Counter(s.protocol for s in self._sessions.values())

    def kick_channel(self, channel: str, reason: str) -> int:
        """End every session of ``channel``; returns how many."""
        sessions = self.by_channel(channel)
        for session in sessions:
            session.kick(reason)
        return len(sessions)
