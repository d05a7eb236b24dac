"""Every endpoint but liveness needs the bearer token; without a token the app refuses to
start unless it is local-only."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from config.errors import ConfigError
from config.settings import PostroomSettings, load_settings
from tests.admin.conftest import TOKEN
from workers.ops.admin import create_admin_app


def _paths(app: FastAPI) -> list[tuple[str, str]]:
    """Every operation of the app's OpenAPI schema, its path's placeholders filled in."""
    routes = []
    for path, operations in app.openapi()["paths"].items():
        concrete = path.replace("{queue}", "message-delivery").replace("{job_id}", "x")
        routes += [(method.upper(), concrete) for method in operations]
    return routes


async def test_every_endpoint_but_liveness_refuses_a_missing_or_wrong_token(
    admin_app: FastAPI,
) -> None:
    transport = httpx.ASGITransport(app=admin_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://admin") as http:
        routes = _paths(admin_app)
        assert len(routes) >= 16
        for method, path in routes:
            if path == "/health/live":
                continue
            missing = await http.request(method, path)
            assert missing.status_code == 401, (method, path)
            assert missing.headers["www-authenticate"] == "Bearer"
            assert "missing bearer token" in missing.json()["detail"]
            wrong = await http.request(method, path, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401, (method, path)
            assert wrong.json() == {"detail": "invalid bearer token"}
            basic = await http.request(method, path, headers={"Authorization": f"Basic {TOKEN}"})
            assert basic.status_code == 401, (method, path)
        live = await http.get("/health/live")
        assert live.status_code == 200 and live.json() == {"status": "ok"}
        good = await http.get("/queues", headers={"Authorization": f"Bearer {TOKEN}"})
        assert good.status_code == 200


def test_without_a_token_the_app_refuses_to_start_naming_the_variable(
    settings: PostroomSettings,
) -> None:
    with pytest.raises(ConfigError, match="POSTROOM_ADMIN_TOKEN"):
        create_admin_app(settings=settings)


async def test_a_local_only_app_without_a_token_serves_without_one(
    settings: PostroomSettings,
) -> None:
    app = create_admin_app(settings=settings, local_only=True)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://admin") as http:
            assert (await http.get("/queues/message-delivery")).status_code == 200


async def test_the_token_comes_from_POSTROOM_ADMIN_TOKEN(
    settings: PostroomSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSTROOM_ADMIN_TOKEN", TOKEN)
    from_env = load_settings(**settings.model_dump(exclude={"admin_token"}))
    app = create_admin_app(settings=from_env)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://admin") as http:
            assert (await http.get("/queues")).status_code == 401
            ok = await http.get("/queues", headers={"Authorization": f"Bearer {TOKEN}"})
            assert ok.status_code == 200


def test_a_short_token_is_refused_without_being_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTROOM_ADMIN_TOKEN", "guessable")
    with pytest.raises(ConfigError, match=r"POSTROOM_ADMIN_TOKEN: .*at least 16") as caught:
        load_settings()
    assert "guessable" not in str(caught.value)
