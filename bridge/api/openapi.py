"""The OpenAPI 3.1 document of the control API, built in code.

Built rather than stored so the channel-name limit follows ID_MAX_LENGTH, and so the document
sits next to the handlers it describes. ``tests/unit/test_api.py`` runs schemathesis against
the served document to keep the two in step.
"""

from __future__ import annotations

from typing import Any

from bridge import __version__

PREFIX = "/api/v1"
CHANNEL_PATTERN = "^[A-Za-z0-9_-]+$"

_JSON = "application/json"


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _json(schema: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": _ref("schemas", schema)}}}


def _object(properties: dict[str, Any], description: str = "") -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "required": list(properties),
        "additionalProperties": False,
        "properties": properties,
    }
    if description:
        schema["description"] = description
    return schema


def _count(description: str) -> dict[str, Any]:
    return {"type": "integer", "minimum": 0, "description": description}


def _nullable_string(description: str) -> dict[str, Any]:
    return {"type": ["string", "null"], "description": description}


_GUARDED = {
    "401": _ref("responses", "Unauthorized"),
    "403": _ref("responses", "Forbidden"),
}


def _operation(
    operation_id: str,
    summary: str,
    ok: dict[str, Any],
    *,
    parameters: list[dict[str, Any]] | None = None,
    bad_request: bool = False,
    not_found: bool = False,
    tag: str = "control",
) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": ok}
    if bad_request:
        responses["400"] = _ref("responses", "BadRequest")
    responses.update(_GUARDED)
    if not_found:
        responses["404"] = _ref("responses", "NotFound")
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "tags": [tag],
        "responses": responses,
    }
    if parameters:
        operation["parameters"] = parameters
    return operation


def build_document(id_max_length: int) -> dict[str, Any]:
    """The document for a server whose channel names are at most ``id_max_length`` long."""
    channel_name = {
        "type": "string",
        "minLength": 1,
        "maxLength": id_max_length,
        "pattern": CHANNEL_PATTERN,
    }
    channel_param = _ref("parameters", "Channel")
    session_param = _ref("parameters", "SessionId")

    schemas: dict[str, Any] = {
        "Error": _object({"error": {"type": "string", "description": "what went wrong"}}),
        "Track": _object(
            {
                "kind": {"type": "string", "description": "video or audio"},
                "codec": {"type": "string", "description": "h264, hevc, av1, aac, opus, ..."},
                "width": _count("pixels; 0 for audio or when not known"),
                "height": _count("pixels; 0 for audio or when not known"),
                "sample_rate": _count("Hz; 0 for video or when not known"),
                "channels": _count("audio channels; 0 for video or when not known"),
            },
            "One track of the live publish. Every field is always present; a field that does "
            "not apply to the track's kind, or is not known, is 0.",
        ),
        "WebRtcPath": _object(
            {
                "viewers": _count("WHEP viewers of the channel"),
                "video": {
                    "enum": ["passthrough", "transcode", None],
                    "description": "passthrough: H.264 as published; transcode: re-encoded "
                    "once for all viewers to H.264 constrained baseline (B-frames, HEVC, "
                    "AV1, VP8), only while someone watches; null before the first video frame",
                },
                "audio": {
                    "enum": ["opus", "aac-to-opus", None],
                    "description": "opus: as published; aac-to-opus: re-encoded once for all "
                    "viewers; null before the first audio frame or for audio WebRTC cannot carry",
                },
                "video_codec": _nullable_string("the published video codec"),
                "audio_codec": _nullable_string("the published audio codec"),
                "keyframe_requests": _count(
                    "picture-loss requests (PLI/FIR) from viewers; passed to the transcoder or "
                    "to a WHIP publisher, which can make a keyframe (an RTMP publisher cannot)"
                ),
            },
            "The WebRTC output of one channel.",
        ),
        "Channel": _object(
            {
                "name": channel_name,
                "live": {"type": "boolean", "description": "a publisher is sending"},
                "publisher": _nullable_string("the publisher's session id; null when not live"),
                "stream_id": _nullable_string(
                    "the publish's stream id (from the callback, or the server's own); "
                    "null when not live"
                ),
                "tracks": {
                    "type": "array",
                    "items": _ref("schemas", "Track"),
                    "description": "the live publish's tracks; empty when not live",
                },
                "bitrate_kbps": {
                    "type": "number",
                    "minimum": 0,
                    "description": "average media bitrate since the publish started; "
                    "0 when not live",
                },
                "readers": _count("players reading the channel (RTMP, WHEP; not HLS segments)"),
                "dropped": _count("media units the current readers dropped (too slow)"),
                "uptime_seconds": {
                    "type": "number",
                    "minimum": 0,
                    "description": "seconds since the publish started; 0 when not live",
                },
                "webrtc": {
                    "oneOf": [{"type": "null"}, _ref("schemas", "WebRtcPath")],
                    "description": "how WHEP viewers get (or would get) the live channel; null "
                    "when it is neither live nor watched over WebRTC",
                },
            },
            "A channel the server knows: live, or with readers waiting for a publisher.",
        ),
        "ChannelList": _object(
            {"channels": {"type": "array", "items": _ref("schemas", "Channel")}}
        ),
        "Session": _object(
            {
                "id": {"type": "string"},
                "protocol": {"type": "string", "description": "rtmp, rtmps, rtmpt, rtmpts, ..."},
                "address": {"type": "string", "description": "the client's IP address"},
                "channel": _nullable_string("null until the client names one"),
                "role": {
                    "type": ["string", "null"],
                    "enum": ["publisher", "player", None],
                    "description": "null until the client publishes or plays",
                },
                "stream_id": _nullable_string("a publisher's stream id; null otherwise"),
                "bytes_in": _count("bytes received from the client"),
                "bytes_out": _count("bytes sent to the client"),
                "started_at": {
                    "type": "string",
                    "format": "date-time",
                    "description": "when the session opened (RFC 3339, UTC)",
                },
            },
            "One client connection of any protocol.",
        ),
        "SessionList": _object(
            {"sessions": {"type": "array", "items": _ref("schemas", "Session")}}
        ),
        "Ended": _object(
            {
                "ended": _count(
                    "sessions told to end; they close asynchronously, so they may still "
                    "be listed for a moment"
                )
            }
        ),
        "Health": {
            "type": "object",
            "required": ["status", "sessions", "channels"],
            # The composition root adds what it knows (listeners, redis, ...): open on purpose.
            "additionalProperties": True,
            "properties": {
                "status": {"type": "string", "description": "ok when everything is up"},
                "listeners": {"type": "array", "items": {"type": "string"}},
                "redis": {"type": "string", "description": "off, connected, or why not"},
                "sessions": _count("open sessions"),
                "channels": _count("channels known (live or with waiting readers)"),
            },
        },
    }

    def error(description: str) -> dict[str, Any]:
        return _json("Error", description)

    unauthorized = error("API_TOKEN is set and the request has no or a wrong Bearer token")
    unauthorized["headers"] = {
        "WWW-Authenticate": {
            "required": True,
            "description": "the Bearer challenge (RFC 6750)",
            "schema": {"type": "string"},
        }
    }
    responses = {
        "BadRequest": error("a malformed parameter (a channel name that cannot exist)"),
        "Unauthorized": unauthorized,
        "Forbidden": error("API_TOKEN is not set and the client is not on the loopback interface"),
        "NotFound": error("no such channel, session or endpoint"),
    }

    parameters = {
        "Channel": {
            "name": "channel",
            "in": "path",
            "required": True,
            "schema": channel_name,
            "description": "channel name: letters, digits, '-' and '_'",
        },
        "SessionId": {
            "name": "id",
            "in": "path",
            "required": True,
            "schema": {"type": "string"},
            "description": "a session id as listed by GET /api/v1/sessions",
        },
    }

    paths: dict[str, Any] = {
        f"{PREFIX}/channels": {
            "get": _operation(
                "listChannels",
                "Every channel the server knows, sorted by name",
                _json("ChannelList", "the channels"),
            )
        },
        f"{PREFIX}/channels/{{channel}}": {
            "parameters": [channel_param],
            "get": _operation(
                "getChannel",
                "One channel",
                _json("Channel", "the channel"),
                bad_request=True,
                not_found=True,
            ),
            "delete": _operation(
                "endChannel",
                "End every session of the channel (publisher and players)",
                _json(
                    "Ended",
                    "how many sessions were told to end (may be 0 for a channel "
                    "whose only readers are internal outputs)",
                ),
                bad_request=True,
                not_found=True,
            ),
        },
        f"{PREFIX}/sessions": {
            "get": _operation(
                "listSessions",
                "Every open session, oldest first",
                _json("SessionList", "the sessions"),
                parameters=[
                    {
                        "name": "channel",
                        "in": "query",
                        "required": False,
                        "schema": channel_name,
                        "description": "only the sessions of this channel",
                    }
                ],
                bad_request=True,
            )
        },
        f"{PREFIX}/sessions/{{id}}": {
            "parameters": [session_param],
            "get": _operation(
                "getSession", "One session", _json("Session", "the session"), not_found=True
            ),
            "delete": _operation(
                "endSession",
                "End (kick) one session",
                _json("Ended", "the session was told to end (ended is 1)"),
                not_found=True,
            ),
        },
        f"{PREFIX}/openapi.json": {
            "get": {
                "operationId": "getOpenApi",
                "summary": "This document (served without authentication: it is documentation)",
                "tags": ["meta"],
                "security": [],
                "responses": {
                    "200": {
                        "description": "the OpenAPI 3.1 document",
                        "content": {_JSON: {"schema": {"type": "object"}}},
                    }
                },
            }
        },
        "/healthz": {
            "get": {
                "operationId": "health",
                "summary": "What is up (no authentication)",
                "tags": ["meta"],
                "security": [],
                "responses": {
                    "200": _json("Health", "everything is up"),
                    "503": _json("Health", "something is down; status says what"),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics (no authentication)",
                "tags": ["meta"],
                "security": [],
                "responses": {
                    "200": {
                        "description": "Prometheus text format, or OpenMetrics when the "
                        "Accept header asks for application/openmetrics-text",
                        "content": {
                            "text/plain": {"schema": {"type": "string"}},
                            "application/openmetrics-text": {"schema": {"type": "string"}},
                        },
                    }
                },
            }
        },
    }

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "bridge control API",
            "version": __version__,
            "description": (
                "Channels and sessions of a bridge live-media server: list them, end a "
                "session, end a channel.\n\n"
                "Authentication: with the API_TOKEN setting, every /api/v1 request needs "
                "`Authorization: Bearer API_TOKEN` (else 401). Without API_TOKEN the API "
                "answers only clients on the loopback interface (else 403); behind a reverse "
                "proxy listed in TRUSTED_PROXIES, the client named by X-Forwarded-For must be "
                "on loopback too. This document, /healthz and /metrics need no "
                "authentication.\n\n"
                'Errors are JSON objects `{"error": "..."}`. Request bodies are ignored; '
                "unknown query parameters are ignored."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "tags": [
            {"name": "control", "description": "channels and sessions"},
            {"name": "meta", "description": "documentation, health and metrics"},
        ],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": responses,
            "parameters": parameters,
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the API_TOKEN setting",
                }
            },
        },
    }
