"""What every protocol adapter shares: one object handed to each, instead of five arguments."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bridge.bus.registry import Registry
    from bridge.config import Config
    from bridge.control.callback import PublishCallback
    from bridge.sessions import SessionTable


@dataclass(frozen=True)
class Services:
    config: Config
    registry: Registry
    sessions: SessionTable
    auth: PublishCallback
