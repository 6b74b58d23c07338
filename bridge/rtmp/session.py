"""One RTMP connection on the server: the asyncio protocol around ``ServerConnection``.

It only pumps bytes and events, talks to the bus, and owns the connection's IO concerns:
timeouts, back-pressure and the one log line at open and close. The same class serves RTMP
and RTMPS (TLS is the transport's business).
"""

from __future__ import annotations

import asyncio
import logging
import time

from bridge.auth.policy import address_allowed, valid_id
from bridge.bus.reader import Reader
from bridge.bus.registry import PublishRefused
from bridge.bus.stream import Stream
from bridge.control.callback import PublishDenied
from bridge.logs import SessionLog, peer_name
from bridge.media.units import AUDIO, VIDEO, MediaUnit, Metadata, Track
from bridge.rtmp import amf0, egress
from bridge.rtmp.connection import (
    ConnectionFailed,
    ConnectRequested,
    Event,
    HandshakeCompleted,
    MediaReceived,
    MetadataReceived,
    PlayRequested,
    PublishRequested,
    ReceiveToggled,
    ServerConnection,
    StreamClosed,
)
from bridge.rtmp.ingest import FlvIngest
from bridge.rtmp.merge import MergedWrites
from bridge.services import Services
from bridge.sessions import PLAYER, PUBLISHER

log = logging.getLogger("bridge.rtmp")

# A client must be publishing or playing this soon after it connects (covers a stalled
# handshake and clients that connect and send nothing).
SETUP_TIMEOUT = 10.0
# A publisher that sends nothing for this long is gone.
PUBLISH_IDLE_TIMEOUT = 30.0
# A player whose socket has not drained for this long has stopped reading.
PLAYER_STALL_TIMEOUT = 30.0
TICK = 1.0
# Transport buffer bounds: above HIGH we stop writing to this player and its bus queue
# takes the overflow (dropping to the next keyframe), so a slow player never holds more.
WRITE_HIGH = 2 * 1024 * 1024
WRITE_LOW = 512 * 1024


class _Player:
    """The bus's view of one playing NetStream (a ``ReaderSink``)."""

    def __init__(self, session: RtmpSession, stream_id: int, channel: str) -> None:
        self.session = session
        self.stream_id = stream_id
        self.channel = channel
        self.reader: Reader | None = None
        self.started = False  # Play.Start sent
        self.ended = False  # UnpublishNotify sent
        self.sent_tracks: dict[str, Track] = {}
        self.audio = True
        self.video = True

    def on_ready(self) -> None:
        # The hot path: called for each unit, for each reader whose queue was empty. The
        # merged-writes timer drains it with the next batch.
        self.session.schedule_flush()

    def on_publish_start(self) -> None:
        conn = self.session.conn
        if not self.started:
            self.started = True
            conn.accept_play(self.stream_id)
            self.session.log.info("playing (publisher is live)")
        elif self.ended:
            self.ended = False
            conn.resume_play(self.stream_id, f"{self.channel} is published again.")
        # New publish, new sequence headers: send them again before its first units.
        self.sent_tracks = {}
        self.session.schedule_flush()

    def on_publish_end(self) -> None:
        if self.started and not self.ended:
            self.ended = True
            self.session.conn.end_play(self.stream_id, f"{self.channel} is unpublished.")
            self.session.schedule_flush()

    def on_refused(self, reason: str) -> None:
        self.reader = None
        self.session.conn.reject_play(self.stream_id, "NetStream.Play.BadName", reason)
        self.session.close_after_flush(f"play refused: {reason}")

    def encode_item(self, item: object, out: list[bytes]) -> None:
        """Append the bytes that carry ``item`` to this player (shared, cached encodings)."""
        chunk_size = self.session.conn.chunk_size_out
        if isinstance(item, MediaUnit):
            track = item.track
            kind = track.kind
            if (kind == VIDEO and not self.video) or (kind == AUDIO and not self.audio):
                return
            if self.sent_tracks.get(kind) is not track:
                self.sent_tracks[kind] = track
                header = egress.sequence_header_chunks(
                    track, egress.dts_ms(item), chunk_size, self.stream_id
                )
                if header:
                    out.append(header)
            out.append(egress.unit_chunks(item, chunk_size, self.stream_id))
        elif isinstance(item, Metadata):
            out.append(egress.metadata_chunks(item, chunk_size, self.stream_id))


class RtmpSession(asyncio.Protocol):
    """One RTMP client (over TCP, TLS or the HTTP tunnel); also a ``bridge.sessions.Session``."""

    def __init__(
        self,
        services: Services,
        connections: set[RtmpSession],
        scheme: str,
        merger: MergedWrites,
    ) -> None:
        self.services = services
        self.config = config = services.config
        self.registry = services.registry
        self.merger = merger
        self.connections = connections
        self.scheme = scheme
        self.conn = ServerConnection(chunk_size=config.rtmp_chunk_size)
        self.transport: asyncio.Transport | None = None
        self.log = SessionLog(log, scheme, "?")
        # bridge.sessions.Session
        self.id = services.sessions.new_id(scheme)
        self.protocol = scheme
        self.ip = ""
        self.channel = ""
        self.role = ""
        self.stream_id = ""
        self.started_at = time.time()
        self._bytes_out = 0
        self.opened = time.monotonic()
        self.last_input = self.opened
        self.idle_since = self.opened  # last moment with no publish and no play
        self.paused_since: float | None = None
        self.stream: Stream | None = None  # what this session publishes
        self.publish_stream_id = 0
        self.publish_key = ""
        self._publish_task: asyncio.Task[None] | None = None
        self._stop_owed = False  # the callback accepted a publish: "stop" is due once
        self.ingest: FlvIngest | None = None
        self.players: dict[int, _Player] = {}
        self._flush_requested = False
        self._tick_handle: asyncio.TimerHandle | None = None
        self._closing_reason: str | None = None
        self._closed = False
        self._registered = False
        self.loop = asyncio.get_running_loop()

    @property
    def bytes_in(self) -> int:
        return self.conn.bytes_received

    @property
    def bytes_out(self) -> int:
        return self._bytes_out

    def kick(self, reason: str) -> None:
        self.close(reason)

    # ------------------------------------------------------------------------- transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH, low=WRITE_LOW)
        self.ip, shown = peer_name(transport.get_extra_info("peername"))
        self.log.peer = shown
        table = self.services.sessions
        if not table.admit(self.ip):
            self._closed = True
            transport.abort()
            log.warning(
                "[%s %s] refused: more than %d connections from this address",
                self.scheme,
                shown,
                self.config.max_ip_concurrent_connections,
            )
            return
        table.add(self)
        self._registered = True
        self.connections.add(self)
        if self.config.log_requests:
            self.log.info("connected")
        self._tick_handle = self.loop.call_later(TICK, self._tick)

    def _write(self, data: bytes) -> None:
        assert self.transport is not None
        self._bytes_out += len(data)
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        self.last_input = time.monotonic()
        events = self.conn.receive_data(data)
        for event in events:
            self._handle(event)
            if self._closed:
                return
        self._send_pending()

    def eof_received(self) -> bool | None:
        self.close("client closed the connection")
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish("connection lost" + (f": {exc}" if exc else ""))

    def pause_writing(self) -> None:
        self.paused_since = time.monotonic()

    def resume_writing(self) -> None:
        self.paused_since = None
        self.schedule_flush()

    # ---------------------------------------------------------------------------- events

    def _handle(self, event: Event) -> None:
        if isinstance(event, MediaReceived):
            self._on_media(event)
        elif isinstance(event, MetadataReceived):
            if self.stream is not None and event.stream_id == self.publish_stream_id:
                self._on_metadata(event.metadata)
        elif isinstance(event, PublishRequested):
            self._on_publish(event)
        elif isinstance(event, PlayRequested):
            self._on_play(event)
        elif isinstance(event, StreamClosed):
            self._on_stream_closed(event.stream_id)
        elif isinstance(event, ReceiveToggled):
            player = self.players.get(event.stream_id)
            if player is not None:
                if event.audio is not None:
                    player.audio = event.audio
                if event.video is not None:
                    player.video = event.video
        elif isinstance(event, ConnectRequested):
            self.log.channel = event.app
            self.log.debug(
                "connect app=%r tcUrl=%r flashVer=%r", event.app, event.tc_url, event.flash_ver
            )
        elif isinstance(event, HandshakeCompleted):
            self.log.debug("handshake done (%s form)", "digest" if event.digest else "simple")
        elif isinstance(event, ConnectionFailed):
            self.close_after_flush(f"protocol error: {event.reason}")

    def _on_media(self, event: MediaReceived) -> None:
        stream, ingest = self.stream, self.ingest
        if stream is None or ingest is None or event.stream_id != self.publish_stream_id:
            return
        for unit in ingest.feed(event.type_id, event.timestamp, event.payload):
            stream.push(unit)
        if ingest.notices:
            for notice in ingest.notices:
                self.log.warning("%s", notice)
            ingest.notices.clear()

    def _on_metadata(self, values: dict[str, object]) -> None:
        # Players get it back as AMF0; values that came as AMF3 (byte arrays, dictionaries
        # with object keys) may have no AMF0 form. Refuse them here, once.
        try:
            amf0.encode(amf0.EcmaArray(values))
        except (TypeError, ValueError) as exc:
            self.log.warning("metadata dropped: %s", exc)
            return
        assert self.stream is not None
        self.stream.set_metadata(values)

    def _names_ok(self, channel: str, key: str) -> bool:
        limit = self.config.id_max_length
        return valid_id(channel, limit) and valid_id(key, limit)

    def _on_publish(self, event: PublishRequested) -> None:
        channel, key = event.app, event.name
        self.log.channel = channel
        if not self._names_ok(channel, key):
            self._refuse_publish(
                event.stream_id, "NetStream.Publish.BadName", "invalid channel or key"
            )
            return
        if self.stream is not None or self._publish_task is not None:
            self._refuse_publish(
                event.stream_id, "NetStream.Publish.BadName", "this connection already publishes"
            )
            return
        live = self.registry.get(channel)
        if live is not None and live.live:
            # Refused before asking the backend: it would accept a publish that cannot start.
            self._refuse_publish(event.stream_id, "NetStream.Publish.BadName", "already publishing")
            return
        self.channel = channel
        self._publish_task = self.loop.create_task(self._authorize(event))

    async def _authorize(self, event: PublishRequested) -> None:
        """Ask the publish callback (or just make a stream id), then start the publish. The
        client waits for NetStream.Publish.Start meanwhile; nothing else waits on this."""
        channel, key = event.app, event.name
        try:
            stream_id = await self.services.auth.start(channel, key, self.ip)
        except PublishDenied as exc:
            if not self._closed:
                self._refuse_publish(event.stream_id, "NetStream.Publish.Denied", str(exc))
            return
        finally:
            self._publish_task = None
        self.stream_id = stream_id
        self.publish_key = key
        self._stop_owed = True
        if self._closed:  # the client left while the backend was deciding
            self._send_stop()
            return
        try:
            stream = self.registry.start_publish(channel, key, self)
        except PublishRefused:
            self._refuse_publish(event.stream_id, "NetStream.Publish.BadName", "already publishing")
            self._send_stop()
            return
        self.stream = stream
        self.publish_stream_id = event.stream_id
        self.role = PUBLISHER
        self.ingest = FlvIngest()
        self.log.info("publishing (stream id %s)", stream_id)
        for pending in self.conn.accept_publish(event.stream_id):
            self._handle(pending)
        self._send_pending()

    def _send_stop(self) -> None:
        """The callback's "stop", exactly once per accepted publish, however it ends."""
        if self._stop_owed:
            self._stop_owed = False
            self.services.auth.stop(self.channel, self.publish_key, self.ip, self.stream_id)

    def _refuse_publish(self, stream_id: int, code: str, reason: str) -> None:
        self.conn.reject_publish(stream_id, code, reason)
        self.close_after_flush(f"publish refused: {reason}")

    def _on_play(self, event: PlayRequested) -> None:
        channel, key = event.app, event.name
        self.log.channel = channel
        if not address_allowed(self.ip, self.config.rtmp_play_whitelist):
            self._refuse_play(event.stream_id, "NetStream.Play.Failed", "this address may not play")
            return
        if not self._names_ok(channel, key):
            self._refuse_play(event.stream_id, "NetStream.Play.BadName", "invalid channel or key")
            return
        player = _Player(self, event.stream_id, channel)
        self.players[event.stream_id] = player
        reader = self.registry.attach(channel, player, key)
        if reader is None:
            del self.players[event.stream_id]
            self._refuse_play(event.stream_id, "NetStream.Play.BadName", "wrong key")
            return
        player.reader = reader
        self.channel = channel
        if not self.role:
            self.role = PLAYER
        if reader.stream.live:
            player.on_publish_start()
        else:
            self.log.info("waiting for a publisher")

    def _refuse_play(self, stream_id: int, code: str, reason: str) -> None:
        self.conn.reject_play(stream_id, code, reason)
        self.close_after_flush(f"play refused: {reason}")

    def _on_stream_closed(self, stream_id: int) -> None:
        if self.stream is not None and stream_id == self.publish_stream_id:
            self._end_publish()
            self.log.info("unpublished")
        player = self.players.pop(stream_id, None)
        if player is not None and player.reader is not None:
            self.registry.detach(player.reader)
            player.reader = None

    def _end_publish(self) -> None:
        stream, self.stream, self.ingest = self.stream, None, None
        if stream is not None:
            self.registry.end_publish(stream, self)
            if self.role == PUBLISHER:
                self.role = ""
        self._send_stop()

    # ---------------------------------------------------------------------------- output

    def schedule_flush(self) -> None:
        if not self._flush_requested and not self._closed:
            self._flush_requested = True
            self.merger.request(self)

    def drain_all(self) -> None:
        self._flush_requested = False
        self._flush()

    def _send_pending(self) -> None:
        data = self.conn.data_to_send()
        if data and self.transport is not None and not self._closed:
            self._write(data)
        if self.players:
            self.schedule_flush()

    def drain_player(self, player: _Player) -> None:
        """Write what the player's queue holds, in one write, while the socket takes it."""
        transport = self.transport
        reader = player.reader
        if transport is None or reader is None or self._closed:
            return
        out: list[bytes] = []
        pending = self.conn.data_to_send()  # statuses go before the media that follows them
        if pending:
            out.append(pending)
        # Bounded per drain, so one player with a deep queue can't hold the loop for long.
        size = 0
        while size < WRITE_LOW:
            item = reader.take()
            if item is None:
                break
            before = len(out)
            player.encode_item(item, out)
            for part in out[before:]:
                size += len(part)
        if out:
            self._write(out[0] if len(out) == 1 else b"".join(out))
        if reader.queue and self.paused_since is None:
            self.schedule_flush()

    def _flush(self) -> None:
        transport = self.transport
        if transport is None or self._closed:
            return
        data = self.conn.data_to_send()
        if data:
            self._write(data)
        if self.paused_since is None:
            for player in list(self.players.values()):
                if player.started and player.reader is not None and player.reader.queue:
                    self.drain_player(player)
        if self._closing_reason is not None:
            self._close_now(self._closing_reason)

    def _tick(self) -> None:
        self._tick_handle = None
        if self._closed:
            return
        now = time.monotonic()
        if self.stream is not None or self.players or self._publish_task is not None:
            self.idle_since = now
        elif now - self.idle_since > SETUP_TIMEOUT:
            self.close(f"nothing published or played for {SETUP_TIMEOUT:.0f} s")
            return
        if self.stream is not None and now - self.last_input > PUBLISH_IDLE_TIMEOUT:
            self.close(f"publisher sent nothing for {PUBLISH_IDLE_TIMEOUT:.0f} s")
            return
        if self.paused_since is not None and now - self.paused_since > PLAYER_STALL_TIMEOUT:
            self.close(f"player stopped reading for {PLAYER_STALL_TIMEOUT:.0f} s")
            return
        self._tick_handle = self.loop.call_later(TICK, self._tick)

    # ----------------------------------------------------------------------------- close

    def close_after_flush(self, reason: str) -> None:
        """Send what is queued (a refusal, an error status), then close."""
        if self._closing_reason is None:
            self._closing_reason = reason
        self._flush()

    def close(self, reason: str) -> None:
        self._close_now(reason)

    def shutdown(self) -> None:
        """Server shutdown: players are told the stream ended, then every session closes."""
        for player in self.players.values():
            if player.started and not player.ended:
                player.ended = True
                self.conn.end_play(player.stream_id, "The server is shutting down.")
        data = self.conn.data_to_send()
        if data and self.transport is not None:
            self._write(data)
        self._close_now("server shutting down")

    def _close_now(self, reason: str) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()  # flushes what is buffered, then closes
        self._finish(reason)

    def _finish(self, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        if not self._registered:
            return  # refused at the door: never counted, nothing to undo
        self._end_publish()
        dropped = 0
        for player in self.players.values():
            if player.reader is not None:
                dropped += player.reader.dropped
                self.registry.detach(player.reader)
                player.reader = None
        self.players.clear()
        self.connections.discard(self)
        self.services.sessions.remove(self)
        if dropped:
            reason += f" (dropped {dropped} units while lagging)"
        if self.config.log_requests:
            self.log.info("closed: %s", reason)
