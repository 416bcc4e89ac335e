"""Benchmarks of tether's batteries: the security, data and network kits.

Run from the repository root: ``python -m benchmarks.batteries`` (``--help`` for
options). Each group is a module of this package; ``GROUPS`` maps a group's name (what
``--only`` takes) to its module and the loopback servers it needs.
"""

from __future__ import annotations

GROUPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "crypto": ("crypto", ()),
    "tokens": ("tokens", ()),
    "ratelimit": ("ratelimit", ("redis",)),
    "cache": ("cache", ("redis",)),
    "settings": ("settings", ()),
    "http": ("http_client", ("http",)),
    "database": ("database", ("postgres",)),
    "redis": ("redis_client", ("redis",)),
}
