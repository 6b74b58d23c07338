"""WebRTC: WHIP ingest and WHEP playback."""
