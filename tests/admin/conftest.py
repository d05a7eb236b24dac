"""The admin app against the suite's real Redis, called in-process through httpx."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

import tests.admin.tasks  # noqa: F401 - registers the tasks the admin tests enqueue
from config.settings import PostroomSettings
from workers.ops.admin import create_admin_app

TOKEN = "admin-token-of-the-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def admin_app(settings: PostroomSettings) -> AsyncIterator[FastAPI]:
    """The app as `postroom serve` runs it: its lifespan closes the client it opened."""
    app = create_admin_app(settings=settings, token=TOKEN)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def api(admin_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the admin app sending the token."""
    transport = httpx.ASGITransport(app=admin_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://admin", headers=AUTH) as c:
        yield c
