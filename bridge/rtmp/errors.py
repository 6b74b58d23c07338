"""One error base for the whole RTMP core.

Raised deep inside the parsers, caught once at the edge of the connection and turned into a
refusal or a close. Nothing else may escape the core when a peer sends garbage.
"""


class RtmpError(Exception):
    """A peer broke the RTMP protocol (or one of our limits on it)."""


class HandshakeError(RtmpError):
    """The C0/C1/C2 bytes are not a handshake we accept."""


class ChunkError(RtmpError):
    """A chunk header or chunk-stream state is invalid, or a limit was passed."""


class AmfError(RtmpError):
    """AMF0/AMF3 bytes do not decode (truncated, bad marker, too deep, bad reference)."""


class FlvError(RtmpError):
    """An audio or video payload is not a valid FLV tag body."""
