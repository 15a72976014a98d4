"""The agent's exceptions.

::

    VantageError (protocol)
    └── AgentError
        ├── ConfigError          bad or missing config, key or target list: fix the input (exit 2)
        └── UploadError          the collector refused or could not be reached (exit 3: data kept)
            └── RejectedError    the collector answered 4xx: retrying the same bytes will not help
"""

from __future__ import annotations

from protocol import VantageError


class AgentError(VantageError):
    exit_code = 1


class ConfigError(AgentError):
    exit_code = 2


class UploadError(AgentError):
    exit_code = 3


class RejectedError(UploadError):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"collector refused ({status} {code}): {message}")
        self.status = status
        self.code = code
