"""Dashboard sessions: ``POST /api/v1/login`` with a ``read`` key sets a session cookie; ``/api/v1/logout`` ends it.

The cookie is HttpOnly (scripts cannot read it), SameSite=Strict (other sites cannot send it) and Secure
when the listener serves TLS. Its value is a random id; the server keeps only the id's digest, the key's
name and scopes, and an expiry, in memory: a restart logs everybody out. Login takes JSON only, which a
page on another site cannot send without the browser asking first.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from collector.auth.authenticator import Authenticator, Refusal
from collector.auth.keys import StoredKey

SESSION_COOKIE = "genai_session"
LOGIN_PATH = "/api/v1/login"
LOGOUT_PATH = "/api/v1/logout"
MAX_SESSIONS = 10_000  # past it the oldest session ends
MAX_LOGIN_BODY = 4096


def _digest(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode()).digest()


class Sessions:
    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._sessions: dict[bytes, tuple[StoredKey, float]] = {}  # id digest -> (key, expiry); oldest first
        self._lock = threading.Lock()

    def open(self, key: StoredKey) -> str:
        session_id = secrets.token_urlsafe(32)
        with self._lock:
            self._sessions[_digest(session_id)] = (key, self._clock() + self.ttl)
            while len(self._sessions) > MAX_SESSIONS:
                del self._sessions[next(iter(self._sessions))]
        return session_id

    def key_of(self, session_id: str) -> StoredKey | None:
        found = self._sessions.get(_digest(session_id))
        if found is None:
            return None
        key, expiry = found
        if self._clock() >= expiry:
            self.close(session_id)
            return None
        return key

    def close(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(_digest(session_id), None)


class SessionEndpoints:
    """Answers the login and logout paths itself; everything else goes on to ``app``."""

    def __init__(self, app: ASGIApp, *, sessions: Sessions, authenticator: Authenticator, listener: str) -> None:
        self.app = app
        self.sessions = sessions
        self.authenticator = authenticator
        self.listener = listener

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in (LOGIN_PATH, LOGOUT_PATH):
            request = Request(scope, receive)
            if request.method != "POST":
                response: Response = _error(405, "method_not_allowed", "use POST", {"Allow": "POST"})
            elif scope["path"] == LOGIN_PATH:
                response = await self._login(request)
            else:
                response = self._logout(request)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _login(self, request: Request) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            return _error(415, "unsupported_media_type", 'send {"key": "<read key>"} as application/json')
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_LOGIN_BODY:
                return _error(413, "too_large", "a login body is a few bytes")
        try:
            presented = json.loads(body).get("key")
        except (ValueError, AttributeError):
            presented = None
        if not isinstance(presented, str) or not presented:
            return _error(400, "bad_request", 'send {"key": "<read key>"}')
        address = request.client.host if request.client else None
        refusal = self.authenticator.check(self.listener, "read", f"Bearer {presented}", address)
        if refusal is not None:
            return _refused(refusal)
        key = self.authenticator.keys.find(presented)
        assert key is not None
        session_id = self.sessions.open(key)
        response = JSONResponse({"name": key.name, "expires_in": int(self.sessions.ttl)})
        response.set_cookie(
            SESSION_COOKIE,
            session_id,
            max_age=int(self.sessions.ttl),
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        response.headers["Cache-Control"] = "no-store"
        return response

    def _logout(self, request: Request) -> Response:
        session_id = request.cookies.get(SESSION_COOKIE)
        if session_id:
            self.sessions.close(session_id)
        response = Response(status_code=204)
        response.delete_cookie(
            SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https"
        )
        return response


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers)


def _refused(refusal: Refusal) -> JSONResponse:
    headers = {"Retry-After": str(refusal.retry_after)} if refusal.retry_after else None
    return _error(refusal.status, refusal.reason, refusal.message, headers)
