from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.auth import Actor
from app.runtime import Runtime
from resolvers.loaders import Loaders


@dataclass
class Context:
    runtime: Runtime
    actor: Actor | None
    connection_params: dict[str, Any] | None = None
    token_key: str | None = None  # the hash of a WebSocket's token, once it is admitted
    compile_reads: bool = False  # the transport takes pre-serialised data (resolvers/compiled.py)
    answered_by: str = "executor"  # which path answered: "compiled" or "executor"
    _loaders: Loaders | None = None

    @property
    def loaders(self) -> Loaders:
        """The request's DataLoaders, made when first used (most subscription events need none)."""
        if self._loaders is None:
            self._loaders = Loaders(self.runtime)
        return self._loaders

    @property
    def phone_region(self) -> str:
        """The region phone numbers without a country code are read in."""
        return self.runtime.settings.default_phone_region

    def fresh_loaders(self) -> None:
        """Drop cached rows: a subscription reloads from the database for every event."""
        self._loaders = None
