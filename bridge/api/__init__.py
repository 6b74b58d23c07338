"""The HTTP control plane: the JSON API under /api/v1, Prometheus metrics, health."""

from bridge.api.metrics import Metrics
from bridge.api.routes import ControlApi

__all__ = ["ControlApi", "Metrics"]
