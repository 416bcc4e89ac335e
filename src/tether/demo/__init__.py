"""The demo service: ``python -m tether.demo`` (or ``python3 dev.py demo``).

An encrypted-notes API in the making: today it stores notes in SQLite through a
``@resource``, runs each request in a transaction that commits or rolls back, and
serves health, metrics and the live status page. It grows as tether's batteries land.
"""

from .app import create_app

__all__ = ["create_app"]
