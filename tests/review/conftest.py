"""Fixtures for the review-loop tests: `store`, a fresh project on each backend (SQLite and
PostgreSQL, see `backend` in tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture()
def store(backend_project):
    return backend_project
