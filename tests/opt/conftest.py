import pytest

from tracejit.opt import engine


@pytest.fixture(autouse=True)
def rewrites_raise(monkeypatch):
    """In these tests a failing rewrite is an error, not a skipped rewrite."""
    monkeypatch.setattr(engine, "RAISE_ON_REWRITE_ERROR", True)
