"""/metrics over HTTP: parsed with prometheus_client's own parsers, values read from the real
session table and bus at scrape time; the callback histogram and counter; the owned registry."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from bridge.api import Metrics
from tests.unit.test_api import TOKEN, FakeSession, World, build_app, config, gop, populated_world

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(
    text: str, parser: Any = text_string_to_metric_families
) -> tuple[dict[str, str], Samples]:
    """Metric types by family name, and every sample by (name, sorted labels)."""
    types: dict[str, str] = {}
    samples: Samples = {}
    for family in parser(text):
        types[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return types, samples


async def scrape(world: World, **kwargs: Any) -> tuple[dict[str, str], Samples]:
    _, app = build_app(world, config(API_TOKEN=TOKEN), **kwargs)
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/metrics")  # no token: metrics are not behind the API's
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        return parse(await response.text())


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def bridge_names(samples: Samples) -> set[str]:
    return {name for name, _ in samples if name.startswith("bridge_")}


async def test_tables_read_at_scrape_time() -> None:
    world = populated_world()
    types, samples = await scrape(world)
    assert types["bridge_sessions"] == "gauge"
    assert {
        protocol: value(samples, "bridge_sessions", protocol=protocol)
        for protocol in ("rtmp", "rtmps", "rtmpt")
    } == {"rtmp": 3, "rtmps": 1, "rtmpt": 1}
    publisher = world.sessions.publisher("live")
    assert isinstance(publisher, FakeSession)
    assert types["bridge_session_bytes_received"] == "counter"
    assert value(samples, "bridge_session_bytes_received_total") == publisher.bytes_in == 13464
    assert value(samples, "bridge_session_bytes_sent_total") == 0
    assert value(samples, "bridge_channel_readers", channel="live") == 2
    assert value(samples, "bridge_channel_readers", channel="waiting") == 1
    assert value(samples, "bridge_channel_live", channel="live") == 1
    assert value(samples, "bridge_channel_live", channel="waiting") == 0
    dropped = sum(r.dropped for r in world.registry.streams["live"].readers)
    assert dropped > 0
    assert types["bridge_dropped_units"] == "counter"
    assert value(samples, "bridge_dropped_units_total") == dropped
    assert value(samples, "bridge_connections_refused_total") == 0
    assert value(samples, "bridge_redis_up") == 0
    assert value(samples, "bridge_redis_state", state="off") == 1

    # The next scrape sees what changed since, with nothing having been told.
    for session in world.sessions:
        if isinstance(session, FakeSession) and session.role == "player":
            session.bytes_out += 1000
    world.push(publisher, gop(480))
    _, samples = await scrape(world)
    assert value(samples, "bridge_session_bytes_sent_total") == 3000
    assert value(samples, "bridge_session_bytes_received_total") == 13464 + 4400 + 88
    assert value(samples, "bridge_dropped_units_total") > dropped


async def test_counters_never_go_back_when_sessions_end() -> None:
    world = populated_world()
    for session in world.sessions:
        assert isinstance(session, FakeSession)
        session.bytes_out += 500
    _, before = await scrape(world)
    dropped = value(before, "bridge_dropped_units_total")
    for session in list(world.sessions):
        session.kick("test")  # readers detach: their drops move to the registry's total
    assert len(world.sessions) == 0 and not world.registry.streams
    _, after = await scrape(world)
    for name in (
        "bridge_session_bytes_received_total",
        "bridge_session_bytes_sent_total",
        "bridge_dropped_units_total",
    ):
        assert value(after, name) == value(before, name), name
    assert value(after, "bridge_session_bytes_sent_total") == 2500
    assert world.registry.dropped_total == dropped
    # No sessions, no channels: those series are gone, the totals stay.
    assert not any(name in ("bridge_sessions", "bridge_channel_readers") for name, _ in after)


async def test_refused_connections_counted() -> None:
    world = World()
    world.sessions = type(world.sessions)(max_per_ip=1, exempt=())
    world._add(FakeSession("rtmp-1", "rtmp", "192.0.2.50"))
    for _ in range(3):
        assert not world.sessions.admit("192.0.2.50")
    _, samples = await scrape(world)
    assert value(samples, "bridge_connections_refused_total") == 3


@pytest.mark.parametrize(
    "state, up",
    [("connected", 1), ("connecting", 0), ("down: Connection refused", 0), ("off", 0)],
)
async def test_redis_state(state: str, up: int) -> None:
    _, samples = await scrape(World(), redis_state=lambda: state)
    assert value(samples, "bridge_redis_up") == up
    assert value(samples, "bridge_redis_state", state=state) == 1
    assert [labels for name, labels in samples if name == "bridge_redis_state"] == [
        (("state", state),)
    ]


async def test_callback_metrics() -> None:
    world = World()
    api, app = build_app(world, config())
    api.metrics.observe_callback("start", "accepted", 0.03)
    api.metrics.observe_callback("start", "accepted", 0.2)
    api.metrics.observe_callback("start", "timeout", 5.0)
    api.metrics.observe_callback("stop", "error", 7.5)
    api.metrics.observe_callback("stop", "error", -1)  # a clock step never makes it negative
    async with TestClient(TestServer(app)) as client:
        types, samples = parse(await (await client.get("/metrics")).text())
    assert types["bridge_callback_seconds"] == "histogram"
    assert types["bridge_callback"] == "counter"
    assert value(samples, "bridge_callback_seconds_count", event="start") == 3
    assert value(samples, "bridge_callback_seconds_sum", event="start") == pytest.approx(5.23)
    assert value(samples, "bridge_callback_seconds_bucket", event="start", le="0.05") == 1
    assert value(samples, "bridge_callback_seconds_bucket", event="start", le="0.25") == 2
    assert value(samples, "bridge_callback_seconds_bucket", event="start", le="5.0") == 3
    assert value(samples, "bridge_callback_seconds_bucket", event="stop", le="5.0") == 1
    assert value(samples, "bridge_callback_seconds_bucket", event="stop", le="10.0") == 2
    assert value(samples, "bridge_callback_seconds_bucket", event="stop", le="+Inf") == 2
    assert value(samples, "bridge_callback_total", event="start", outcome="accepted") == 2
    assert value(samples, "bridge_callback_total", event="start", outcome="timeout") == 1
    assert value(samples, "bridge_callback_total", event="stop", outcome="error") == 2


async def test_openmetrics_when_asked() -> None:
    world = populated_world()
    api, app = build_app(world, config())
    api.metrics.observe_callback("start", "accepted", 0.01)
    async with TestClient(TestServer(app)) as client:
        response = await client.get(
            "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        text = await response.text()
    assert text.endswith("# EOF\n")
    _, samples = parse(text, openmetrics_families)
    assert value(samples, "bridge_channel_readers", channel="live") == 2
    assert value(samples, "bridge_callback_total", event="start", outcome="accepted") == 1


def test_registries_are_owned_not_global() -> None:
    """Two servers in one process: no duplicate-registration error, no cross-talk, nothing in
    prometheus_client's global registry."""
    one, two = World(), World()
    metrics_one = Metrics(one.registry, one.sessions)
    metrics_two = Metrics(two.registry, two.sessions)
    metrics_one.observe_callback("start", "accepted", 0.1)
    one._add(FakeSession("rtmp-1", "rtmp", "192.0.2.1"))
    _, samples_one = parse(metrics_one.render()[0].decode())
    _, samples_two = parse(metrics_two.render()[0].decode())
    assert value(samples_one, "bridge_sessions", protocol="rtmp") == 1
    assert ("bridge_sessions", (("protocol", "rtmp"),)) not in samples_two
    assert ("bridge_callback_total", (("event", "start"), ("outcome", "accepted"))) not in (
        samples_two
    )
    global_names = {sample.name for family in REGISTRY.collect() for sample in family.samples}
    assert not {name for name in global_names if name.startswith("bridge_")}
    assert bridge_names(samples_one) >= {
        "bridge_sessions",
        "bridge_session_bytes_received_total",
        "bridge_session_bytes_sent_total",
        "bridge_dropped_units_total",
        "bridge_connections_refused_total",
        "bridge_redis_up",
        "bridge_redis_state",
        "bridge_callback_seconds_count",
        "bridge_callback_total",
    }
