"""Helpers shared by command modules."""

from __future__ import annotations

from txguard.settings import Settings, load_settings


def settings() -> Settings:
    return load_settings()
