"""Errors of the codec helpers in ``bridge.media``.

The media layer sits below every protocol, so it has its own error rather than borrowing
one from ``bridge.rtmp``; a protocol core that parses codec configuration catches
:class:`CodecConfigError` at its edge, as it does its own errors.
"""


class CodecConfigError(ValueError):
    """A codec configuration record or bitstream (SPS, ASC, NAL framing) is malformed,
    truncated or outside our limits."""
