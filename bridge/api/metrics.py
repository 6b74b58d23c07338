"""Prometheus metrics, read from the session table and the bus at scrape time.

Nothing here runs per packet: a custom collector walks the tables when Prometheus scrapes
(a few thousand sessions cost well under a millisecond), and only the publish callback, which
runs once per publish, feeds metric objects directly. Every metric lives in a
``CollectorRegistry`` owned by ``Metrics``, never the process-global one, so two servers in one
process (the tests) do not collide.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from bridge.bus.registry import Registry
from bridge.sessions import SessionTable

# The callback timeout defaults to 5 s and may be set up to 120 s; the buckets cover both a
# healthy backend (tens of ms) and one that is about to time out.
CALLBACK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)


class _TableCollector:
    """Reads the session table and the bus registry each time it is collected."""

    def __init__(
        self, registry: Registry, sessions: SessionTable, redis_state: Callable[[], str]
    ) -> None:
        self._registry = registry
        self._sessions = sessions
        self._redis_state = redis_state

    def describe(self) -> Iterator[Metric]:
        # Names only, so the CollectorRegistry can refuse duplicates without a scrape.
        yield from self._families().values()

    def collect(self) -> Iterator[Metric]:
        families = self._families()
        sessions = self._sessions
        registry = self._registry

        by_protocol: Counter[str] = Counter()
        bytes_in = sessions.closed_bytes_in
        bytes_out = sessions.closed_bytes_out
        for session in sessions:
            by_protocol[session.protocol] += 1
            bytes_in += session.bytes_in
            bytes_out += session.bytes_out
        for protocol in sorted(by_protocol):
            families["sessions"].add_metric([protocol], by_protocol[protocol])
        families["bytes_in"].add_metric([], bytes_in)
        families["bytes_out"].add_metric([], bytes_out)

        dropped = registry.dropped_total
        for channel in sorted(registry.streams):
            stream = registry.streams[channel]
            families["readers"].add_metric([channel], stream.viewers)
            families["live"].add_metric([channel], 1 if stream.live else 0)
            dropped += sum(reader.dropped for reader in stream.readers)
        families["dropped"].add_metric([], dropped)
        families["refused"].add_metric([], sessions.refused)

        state = self._redis_state()
        families["redis_up"].add_metric([], 1 if state == "connected" else 0)
        families["redis_state"].add_metric([state], 1)
        yield from families.values()

    @staticmethod
    def _families() -> dict[str, GaugeMetricFamily | CounterMetricFamily]:
        return {
            "sessions": GaugeMetricFamily(
                "bridge_sessions", "Open client sessions by protocol", labels=["protocol"]
            ),
            "bytes_in": CounterMetricFamily(
                "bridge_session_bytes_received",
                "Bytes received from clients, over every session since start",
            ),
            "bytes_out": CounterMetricFamily(
                "bridge_session_bytes_sent",
                "Bytes sent to clients, over every session since start",
            ),
            "readers": GaugeMetricFamily(
                "bridge_channel_readers",
                "Readers (players and internal outputs) attached to a channel",
                labels=["channel"],
            ),
            "live": GaugeMetricFamily(
                "bridge_channel_live",
                "1 while the channel has a publisher, 0 while readers wait for one",
                labels=["channel"],
            ),
            "dropped": CounterMetricFamily(
                "bridge_dropped_units",
                "Media units dropped because a reader could not keep up",
            ),
            "refused": CounterMetricFamily(
                "bridge_connections_refused",
                "Connections refused by the per-IP concurrent connection limit",
            ),
            "redis_up": GaugeMetricFamily(
                "bridge_redis_up", "1 while the Redis command subscriber is connected"
            ),
            "redis_state": GaugeMetricFamily(
                "bridge_redis_state",
                "The Redis command subscriber's state (the labelled series is 1)",
                labels=["state"],
            ),
        }


class Metrics:
    """Every metric of the server, in a registry of its own."""

    def __init__(
        self,
        registry: Registry,
        sessions: SessionTable,
        redis_state: Callable[[], str] = lambda: "off",
    ) -> None:
        self.prometheus = CollectorRegistry(auto_describe=False)
        self.prometheus.register(_TableCollector(registry, sessions, redis_state))
        self._callback_seconds = Histogram(
            "bridge_callback_seconds",
            "Time the publish callback backend took to answer (or to fail)",
            ["event"],
            buckets=CALLBACK_BUCKETS,
            registry=self.prometheus,
        )
        self._callback_total = PromCounter(
            "bridge_callback",
            "Publish callbacks by event and outcome",
            ["event", "outcome"],
            registry=self.prometheus,
        )

    def observe_callback(self, event: str, outcome: str, seconds: float) -> None:
        """Record one callback: ``event`` start/stop, ``outcome`` as the caller names it
        (accepted, refused, timeout, error, ...)."""
        self._callback_seconds.labels(event).observe(max(0.0, seconds))
        self._callback_total.labels(event, outcome).inc()

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The exposition for a scrape: body and Content-Type, in the format the scraper's
        Accept header asks for (Prometheus text by default, OpenMetrics when asked)."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.prometheus), content_type
