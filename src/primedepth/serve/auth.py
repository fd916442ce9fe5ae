"""One authentication layer over the whole app: the API, the demo and its Gradio routes, the docs.

With a key set, every request needs it except `/healthz`, the minimal `/readyz` (no model or
error details without the key), the login page, and `/metrics` when it is made public. The key
travels as ``Authorization: Bearer KEY`` or ``X-API-Key: KEY`` (programs), or as a session cookie
that the login page (`/login`) sets after a browser user typed the key into its form. The cookie
holds an HMAC of the key, not the key; it is HttpOnly and SameSite=Strict (another site's page
cannot make the browser send it). Every comparison is constant-time (`hmac.compare_digest`) and
the key is never logged or echoed.

This is ASGI middleware, so it sits in front of everything the app serves, mounted Gradio apps and
their websockets included: nothing added later can forget to ask for the key.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["Authentication", "AUTHENTICATED", "LOGIN_PATH", "LOGOUT_PATH", "SESSION_COOKIE", "OPEN_PATHS",
           "UNAUTHORIZED_MESSAGE", "session_token"]

LOGIN_PATH = "/login"
LOGOUT_PATH = "/logout"
SESSION_COOKIE = "primedepth_session"
SESSION_SECONDS = 12 * 3600
OPEN_PATHS = frozenset({"/healthz", "/readyz"})  # /readyz answers less without the key
AUTHENTICATED = "primedepth.authenticated"  # scope key: whether this request carried the key
MAX_LOGIN_BODY = 4096
UNAUTHORIZED_MESSAGE = ("missing or wrong API key: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'; "
                        f"in a browser, enter the key at {LOGIN_PATH}")
_SESSION_CONTEXT = b"primedepth browser session v1"

LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>PrimeDepth: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;max-width:28rem;margin:4rem auto;padding:0 1rem}}
input,button{{font-size:1rem;padding:.5rem;width:100%;box-sizing:border-box;margin:.3rem 0}}
.error{{color:#b00020}}</style></head>
<body><h1>PrimeDepth</h1>
<p>This server needs its API key. Enter it once; this browser then keeps a session cookie
(HttpOnly, {hours} hours) for the demo and the API docs.</p>
{error}<form method="post" action="{action}">
<input type="hidden" name="next" value="{next}">
<label for="key">API key</label>
<input id="key" name="key" type="password" autocomplete="current-password" required autofocus>
<button id="sign-in" type="submit">Sign in</button></form></body></html>
"""


def session_token(key: str) -> str:
    """The session cookie's value for `key`: an HMAC of it (the cookie never holds the key)."""
    return hmac.new(key.encode(), _SESSION_CONTEXT, hashlib.sha256).hexdigest()


def _headers(scope: Scope) -> dict[str, str]:
    """Request headers, lower-case names, latin-1 decoded (the last of repeated ones wins)."""
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope.get("headers", ())}


def _cookie(header: str, name: str) -> str:
    """One cookie's value from a Cookie header ('' when absent)."""
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value.strip()
    return ""


def _safe_next(value: str, root: str) -> str:
    """Where to go after signing in: a path on this server only (no scheme, host or '//')."""
    parts = urlsplit(value)
    if not value.startswith("/") or value.startswith("//") or parts.scheme or parts.netloc or "\\" in value:
        return root or "/"
    return value


class Authentication:
    """ASGI middleware requiring `key` on every path but the open ones (see the module).

    `metrics_public`: /metrics needs no key (a Prometheus scraper on a private network).
    `on_refused(kind)`: called for each refused request (the errors metric).
    `home`: where the login page sends a browser by default (the demo, else the docs).
    """

    def __init__(self, app: ASGIApp, key: str | None, metrics_public: bool = False,
                 on_refused: Callable[[str], None] | None = None, home: str = "/docs") -> None:
        self.app = app
        self.key = key.encode() if key else None
        self.token = session_token(key).encode() if key else None
        self.open_paths = OPEN_PATHS | ({"/metrics"} if metrics_public else set())
        self.on_refused = on_refused
        self.home = home

    def _presented(self, headers: dict[str, str]) -> bool:
        """Whether the request carries the key (header) or a valid session cookie (constant-time)."""
        assert self.key is not None and self.token is not None
        given = headers.get("x-api-key", "")
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if not given and scheme.lower() == "bearer":
            given = token.strip()
        if given and hmac.compare_digest(given.encode("latin-1"), self.key):
            return True
        cookie = _cookie(headers.get("cookie", ""), SESSION_COOKIE)
        return bool(cookie) and hmac.compare_digest(cookie.encode("latin-1"), self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if self.key is None:
            scope[AUTHENTICATED] = True
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):] or "/"
        headers = _headers(scope)
        scope[AUTHENTICATED] = self._presented(headers)
        if scope["type"] == "http" and path in (LOGIN_PATH, LOGOUT_PATH):
            await self._login(scope, receive, send, path, root)
        elif scope[AUTHENTICATED] or path in self.open_paths:
            await self.app(scope, receive, send)
        else:
            await self._refuse(scope, send, headers, root)

    # ------------------------------------------------------------------ refusing

    async def _refuse(self, scope: Scope, send: Send, headers: dict[str, str], root: str) -> None:
        """401 JSON for programs, a redirect to the login page for a browser page, a closed websocket."""
        if self.on_refused is not None:
            self.on_refused("unauthorized")
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "API key required"})
            return
        wants_page = scope["method"] in ("GET", "HEAD") and "text/html" in headers.get("accept", "")
        if wants_page:
            target = scope.get("raw_path", b"").decode("latin-1") or scope["path"]
            query = scope.get("query_string", b"").decode("latin-1")
            target = target + (f"?{query}" if query else "")
            await _send(send, 303, b"", [(b"location", f"{root}{LOGIN_PATH}?next={quote(target, safe='')}".encode())])
            return
        body = json.dumps({"error": "unauthorized", "message": UNAUTHORIZED_MESSAGE, "status": 401}).encode()
        await _send(send, 401, body, [(b"content-type", b"application/json"),
                                      (b"www-authenticate", b'Bearer realm="primedepth"'), (b"connection", b"close")])

    # ------------------------------------------------------------------ the login page

    async def _login(self, scope: Scope, receive: Receive, send: Send, path: str, root: str) -> None:
        """GET: the form. POST: check the key, set the session cookie, go on. /logout: forget it."""
        secure = "; Secure" if scope.get("scheme") == "https" else ""
        attributes = f"Path={root or '/'}; HttpOnly; SameSite=Strict{secure}"
        if path == LOGOUT_PATH:
            cookie = f"{SESSION_COOKIE}=; Max-Age=0; {attributes}"
            await _send(send, 303, b"", [(b"location", f"{root}{LOGIN_PATH}".encode()), (b"set-cookie", cookie.encode())])
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        target = _safe_next(query.get("next", [""])[0], root) if query.get("next") else f"{root}{self.home}"
        if scope["method"] != "POST":
            await self._page(send, 200, target, root, "")
            return
        form = parse_qs((await _read_body(receive, MAX_LOGIN_BODY)).decode("utf-8", "replace"))
        target = _safe_next(form.get("next", [target])[0], root)
        given = form.get("key", [""])[0].strip().encode()
        assert self.key is not None and self.token is not None
        if not given or not hmac.compare_digest(given, self.key):
            if self.on_refused is not None:
                self.on_refused("unauthorized")
            await self._page(send, 401, target, root, "wrong key, try again")
            return
        cookie = f"{SESSION_COOKIE}={self.token.decode()}; Max-Age={SESSION_SECONDS}; {attributes}"
        await _send(send, 303, b"", [(b"location", target.encode()), (b"set-cookie", cookie.encode())])

    async def _page(self, send: Send, status: int, target: str, root: str, error: str) -> None:
        page = LOGIN_PAGE.format(hours=SESSION_SECONDS // 3600, action=html.escape(f"{root}{LOGIN_PATH}"),
                                 next=html.escape(target), error=f'<p class="error">{html.escape(error)}</p>' if error else "")
        await _send(send, status, page.encode(), [(b"content-type", b"text/html; charset=utf-8"),
                                                  (b"cache-control", b"no-store")])


async def _read_body(receive: Receive, limit: int) -> bytes:
    """A small request body (the login form), cut at `limit` bytes."""
    body = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return body
        body += message.get("body", b"")
        if len(body) > limit or not message.get("more_body", False):
            return body[:limit]


async def _send(send: Send, status: int, body: bytes, headers: list[Any]) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
