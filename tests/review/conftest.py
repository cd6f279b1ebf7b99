"""Fixtures for the review-loop tests."""

from __future__ import annotations

import pytest

from engine.store import Store


@pytest.fixture()
def store(tmp_path):
    opened = Store.open(tmp_path / "project")
    yield opened
    opened.close()
