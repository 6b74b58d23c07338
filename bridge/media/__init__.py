"""The media model shared by every input and output: tracks, units, codec helpers."""
