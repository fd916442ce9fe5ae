"""One authentication layer: a keyed server with the demo, probed on every route it has.

Without the key nothing but /healthz and a minimal /readyz answers (every other route of the
app, the mounted Gradio demo's included, gives 401, or a browser page a redirect to the login
page); with the key as a header or as the login page's session cookie, everything works.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Mount, WebSocketRoute

from primedepth.serve.auth import SESSION_COOKIE, session_token
from primedepth.errors import InputError
from primedepth.serve.settings import ServeSettings, read_key_file

from .helpers import http, live_server, png_bytes, random_image, require, start_server

require("gradio", "the demo's routes")

__all__ = ["live_server"]  # the fixture, imported for pytest

KEY = "k3y-for-tests-0123456789"
OPEN = {"/healthz", "/readyz", "/login", "/logout"}
_PARAMETER = re.compile(r"\{[^}]*\}")


def fresh() -> httpx.Client:
    """A client of its own: a session cookie set by signing in must not leak into other tests
    (cookies are per host, not per port, and the shared client keeps them)."""
    return httpx.Client(timeout=60)


@pytest.fixture(scope="module")
def keyed(tiny_model: Path) -> Any:
    server = start_server(tiny_model, api_key=KEY, demo_path="/demo")
    yield server
    server.__exit__(None, None, None)


def _routes(routes: list[Any], prefix: str = "") -> list[tuple[str, str]]:
    """(method, concrete path) of every HTTP route, through mounts (the Gradio app)."""
    found = []
    for route in routes:
        if isinstance(route, Mount):
            found += _routes(getattr(route.app, "routes", []), prefix + route.path)
            continue
        if hasattr(route, "original_router"):  # FastAPI's included routers
            found += _routes(route.original_router.routes, prefix + (route.include_context.prefix or ""))
            continue
        if isinstance(route, WebSocketRoute) or not hasattr(route, "path"):
            continue
        path = _PARAMETER.sub("x", prefix + route.path) or "/"
        for method in sorted(getattr(route, "methods", None) or {"GET"}):
            if method != "HEAD":
                found.append((method, path))
    return found


def test_every_route_but_health_needs_the_key(keyed):
    app = keyed.app
    routes = _routes(app.routes)
    assert len(routes) > 30 and any(path.startswith("/demo/gradio_api") for _, path in routes)
    assert ("POST", "/v1/depth") in routes and ("GET", "/openapi.json") in routes
    opened = []
    for method, path in routes:
        answer = http.request(method, keyed.url + path, headers={"accept": "application/json"})
        if path in OPEN:
            opened.append(path)
            continue
        assert answer.status_code == 401, (method, path, answer.status_code, answer.text[:200])
        assert answer.json()["error"] == "unauthorized" and KEY not in answer.text
    assert {"/healthz", "/readyz"} <= set(opened)
    for path in ("/demo/", "/demo/config", "/demo/gradio_api/info", "/demo/gradio_api/file=/etc/hostname",
                 "/docs", "/metrics", "/v1/info", "/anything"):
        assert http.get(keyed.url + path, headers={"accept": "application/json"}).status_code == 401, path


def test_readyz_says_little_without_the_key(keyed):
    assert http.get(f"{keyed.url}/readyz").json() == {"status": "ready"}
    full = http.get(f"{keyed.url}/readyz", headers={"Authorization": f"Bearer {KEY}"}).json()
    assert full["status"] == "ready" and full["device"] == "cpu" and "captioning" in full
    assert http.get(f"{keyed.url}/healthz").json() == {"status": "ok"}


def test_the_key_opens_everything(keyed):
    for headers in ({"Authorization": f"Bearer {KEY}"}, {"X-API-Key": KEY}):
        for path in ("/v1/info", "/docs", "/openapi.json", "/metrics", "/demo/", "/demo/config"):
            assert http.get(keyed.url + path, headers=headers).status_code == 200, path
    files = [("image", ("a.png", png_bytes(random_image(1)), "image/png"))]
    answer = http.post(f"{keyed.url}/v1/depth", files=files, data={"outputs": "npy"}, headers={"X-API-Key": KEY})
    assert answer.status_code == 200, answer.text
    for wrong in ({"Authorization": f"Bearer {KEY}x"}, {"X-API-Key": KEY[:-1]}, {"Authorization": f"Basic {KEY}"}):
        assert http.get(f"{keyed.url}/v1/info", headers=wrong).status_code == 401


def test_a_browser_signs_in_on_the_login_page(keyed):
    page = http.get(f"{keyed.url}/demo/", headers={"accept": "text/html"}, follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/login?next=%2Fdemo%2F"
    form = http.get(f"{keyed.url}/login?next=/demo/")
    assert form.status_code == 200 and 'name="key"' in form.text and 'type="password"' in form.text
    wrong = fresh().post(f"{keyed.url}/login", data={"key": "nope", "next": "/demo/"}, follow_redirects=False)
    assert wrong.status_code == 401 and "wrong key" in wrong.text and "set-cookie" not in wrong.headers
    right = fresh().post(f"{keyed.url}/login", data={"key": KEY, "next": "/demo/"}, follow_redirects=False)
    assert right.status_code == 303 and right.headers["location"] == "/demo/"
    cookie = right.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and KEY not in cookie
    value = cookie.split(";")[0].split("=", 1)[1]
    assert value == session_token(KEY)
    session = {"cookie": f"{SESSION_COOKIE}={value}"}
    assert http.get(f"{keyed.url}/demo/config", headers=session).status_code == 200
    assert http.get(f"{keyed.url}/demo/config", headers={"cookie": f"{SESSION_COOKIE}={value[:-1]}0"}).status_code == 401
    elsewhere = fresh().post(f"{keyed.url}/login", data={"key": KEY, "next": "//evil.example/"}, follow_redirects=False)
    assert elsewhere.headers["location"] == "/"  # never sent to another site
    out = http.get(f"{keyed.url}/logout", follow_redirects=False)
    assert out.status_code == 303 and "Max-Age=0" in out.headers["set-cookie"]


def test_refusals_are_counted(keyed):
    http.get(f"{keyed.url}/v1/info")
    text = http.get(f"{keyed.url}/metrics", headers={"X-API-Key": KEY}).text
    assert re.search(r'primedepth_requests_total\{route="api",status="401"\} [1-9]', text), text
    assert 'primedepth_errors_total{kind="unauthorized"}' in text


def test_the_demo_command_at_the_root_sends_browsers_to_the_login_page(live_server):
    """`primedepth demo` mounts the demo at / with no API: the same layer protects it."""
    server = live_server(api=False, demo_path="/", api_key=KEY)
    page = http.get(f"{server.url}/", headers={"accept": "text/html"}, follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/login?next=%2F"
    assert http.get(f"{server.url}/config").status_code == 401
    assert http.get(f"{server.url}/config", headers={"X-API-Key": KEY}).status_code == 200
    signed = fresh().post(f"{server.url}/login", data={"key": KEY}, follow_redirects=False)
    assert signed.status_code == 303 and signed.headers["location"] == "/"


def test_public_metrics_and_keys_from_files(live_server, tmp_path, capsys):
    server = live_server(api_key=KEY, metrics_public=True)
    assert http.get(f"{server.url}/metrics").status_code == 200
    assert http.get(f"{server.url}/v1/info").status_code == 401
    key_file = tmp_path / "key"
    key_file.write_text(f"  {KEY}\n")
    assert read_key_file(key_file) == KEY
    settings = ServeSettings().with_env_key({"PRIMEDEPTH_API_KEY_FILE": str(key_file)})
    assert settings.api_key == KEY and KEY not in repr(settings)
    for bad in ("", "two words"):
        key_file.write_text(bad)
        with pytest.raises(InputError, match="one key on one line") as error:
            read_key_file(key_file)
        assert bad not in str(error.value) or not bad
    with pytest.raises(InputError, match="cannot read the API key file"):
        read_key_file(tmp_path / "missing")
    assert KEY not in capsys.readouterr().err



def test_websockets_need_the_key_too():
    """Gradio may open websockets; the layer closes them without the key (policy violation)."""
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute as Socket
    from starlette.testclient import TestClient
    from starlette.websockets import WebSocketDisconnect

    from primedepth.serve.auth import Authentication

    async def echo(websocket):
        await websocket.accept()
        await websocket.send_text("hello")
        await websocket.close()

    app = Authentication(Starlette(routes=[Socket("/ws", echo)]), key=KEY)
    with TestClient(app) as client:
        with pytest.raises(WebSocketDisconnect) as closed:
            with client.websocket_connect("/ws") as socket:
                socket.receive_text()
        assert closed.value.code == 1008
        with client.websocket_connect("/ws", headers={"X-API-Key": KEY}) as socket:
            assert socket.receive_text() == "hello"
