"""HLS and Low-Latency HLS: pure segmenting and playlist model (no IO, no clock)."""
