"""Redis lists commands (see table.py for the handler contract)."""

from __future__ import annotations
