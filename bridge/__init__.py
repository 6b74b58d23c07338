"""bridge: a live-media server (RTMP in, RTMP/HLS/WebRTC out) on one shared media bus."""

__version__ = "0.1.0"
