"""The demo service: ``python -m tether.demo`` (or ``python3 dev.py demo``).

An encrypted notes API on tether's batteries: SQL through the database battery,
notes sealed by the crypto battery, cached reads, JWT logins, rate limits, an
outbound HTTP call, health, metrics and the live status page. Embedded defaults
need nothing running; ``DATABASE_URL`` and ``REDIS_URL`` move it to PostgreSQL and
Redis.
"""

from .app import create_app

__all__ = ["create_app"]
