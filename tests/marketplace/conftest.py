"""Fixtures and helpers shared by the marketplace's tests."""

from pathlib import Path

import pytest


@pytest.fixture
def media(settings, tmp_path) -> Path:
    """A scratch MEDIA_ROOT, so that a test can see every file an upload left behind."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())
