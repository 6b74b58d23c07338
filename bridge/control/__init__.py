"""Control plane: publish auth callbacks, limits, Redis commands, HTTP API and metrics."""
