"""Per-channel transcoding between the RTMP/HLS and WebRTC codecs, off the event loop."""
