"""Top-level test configuration. Importing this puts ``tests/`` on ``sys.path`` (pytest's prepend
import mode), so test modules can ``import builders`` and ``from needs import require``."""

from __future__ import annotations

from needs import REQUIRE_ALL, require

__all__ = ["REQUIRE_ALL", "require"]
