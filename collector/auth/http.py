"""The authenticator as ASGI middleware, for HTTP requests and WebSocket handshakes.

Credentials: ``Authorization: Bearer <key>``; on a WebSocket, where browsers cannot set that header, a
subprotocol ``genai-collector.bearer.<key>`` offered beside ``genai-collector.v1`` (the server answers
``genai-collector.v1``, as Kubernetes and Jupyter do); or the dashboard's session cookie. Never the query
string, which ends up in logs. A refused WebSocket is answered with an HTTP status before it is accepted.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from collector.auth.authenticator import Authenticator, Refusal
from collector.auth.sessions import SESSION_COOKIE, Sessions
from collector.config import Scope as KeyScope

REALM = 'Bearer realm="genai-collector"'
WEBSOCKET_PROTOCOL = "genai-collector.v1"
WEBSOCKET_BEARER_PREFIX = "genai-collector.bearer."

Render = Callable[[Refusal, Headers, dict[str, str]], Response]


def json_refusal(refusal: Refusal, request_headers: Headers, headers: dict[str, str]) -> Response:
    """The query API's error shape: ``{"error": {"code", "message"}}``."""
    return JSONResponse({"error": {"code": refusal.reason, "message": refusal.message}}, refusal.status, headers)


def answer_headers(refusal: Refusal) -> dict[str, str]:
    if refusal.status == 401:
        invalid = refusal.reason in ("unknown_key", "malformed", "expired_session")
        return {"WWW-Authenticate": REALM + (', error="invalid_token"' if invalid else "")}
    if refusal.retry_after:
        return {"Retry-After": str(refusal.retry_after)}
    return {}


def client_address(scope: Scope) -> str | None:
    client = scope.get("client")
    return client[0] if client else None


def offered_protocols(headers: Headers) -> list[str]:
    return [part.strip() for value in headers.getlist("sec-websocket-protocol") for part in value.split(",")]


class AuthMiddleware:
    """Guards the paths ``scope_for`` gives a scope (None: open). ``render`` shapes the refusal body."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        authenticator: Authenticator,
        listener: str,
        scope_for: Callable[[str], KeyScope | None],
        render: Render = json_refusal,
        sessions: Sessions | None = None,
    ) -> None:
        self.app = app
        self.authenticator = authenticator
        self.listener = listener
        self.scope_for = scope_for
        self.render = render
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        needed = self.scope_for(scope["path"])
        if needed is None:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        authorization = headers.get("authorization")
        protocols = offered_protocols(headers) if scope["type"] == "websocket" else []
        if authorization is None:
            for protocol in protocols:
                if protocol.startswith(WEBSOCKET_BEARER_PREFIX):
                    authorization = "Bearer " + protocol.removeprefix(WEBSOCKET_BEARER_PREFIX)
        refusal = self._check(scope, needed, authorization, headers)
        if refusal is not None:
            response = self.render(refusal, headers, answer_headers(refusal))
            if scope["type"] == "websocket":
                await _deny_websocket(scope, send, response)
            else:
                await response(scope, receive, send)
            return
        if WEBSOCKET_PROTOCOL in protocols:
            send = _answering_protocol(send)
        await self.app(scope, receive, send)

    def _check(self, scope: Scope, needed: KeyScope, authorization: str | None, headers: Headers) -> Refusal | None:
        address = client_address(scope)
        if authorization is None and self.sessions is not None:
            session_id = _cookie(headers, SESSION_COOKIE)
            if session_id is not None:
                key = self.sessions.key_of(session_id)
                if key is None:
                    return self.authenticator.refuse(self.listener, "expired_session", address or "unknown")
                return self.authenticator.grant(self.listener, needed, key, address or "unknown")
        return self.authenticator.check(self.listener, needed, authorization, address)


def _cookie(headers: Headers, name: str) -> str | None:
    for header in headers.getlist("cookie"):
        for pair in header.split(";"):
            key, _, value = pair.strip().partition("=")
            if key == name and value:
                return value
    return None


def _answering_protocol(send: Send) -> Send:
    async def send_with_protocol(message: Message) -> None:
        if message["type"] == "websocket.accept" and not message.get("subprotocol"):
            message = {**message, "subprotocol": WEBSOCKET_PROTOCOL}
        await send(message)

    return send_with_protocol


async def _deny_websocket(scope: Scope, send: Send, response: Response) -> None:
    """Answer the handshake with the refusal's HTTP status where the server can (uvicorn can), else close."""
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008})
        return
    await send(
        {"type": "websocket.http.response.start", "status": response.status_code, "headers": response.raw_headers}
    )
    await send({"type": "websocket.http.response.body", "body": response.body})
