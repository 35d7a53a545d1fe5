"""The authenticator as a grpc.aio server interceptor: metadata ``authorization: Bearer <key>``.

A refusal is UNAUTHENTICATED (no or wrong key), PERMISSION_DENIED (a key without the scope) or
RESOURCE_EXHAUSTED with a RetryInfo (too many wrong keys from the address). The health service stays open.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

import grpc
from google.rpc import code_pb2

from collector.auth.authenticator import Authenticator, Refusal
from collector.config import Scope

OPEN_SERVICES = ("/grpc.health.v1.Health/",)
_CODES = {401: grpc.StatusCode.UNAUTHENTICATED, 403: grpc.StatusCode.PERMISSION_DENIED}


def peer_address(peer: str) -> str:
    """``ipv4:127.0.0.1:5000`` / ``ipv6:%5B::1%5D:5000`` -> the address alone."""
    _, _, rest = unquote(peer).partition(":")
    host, _, _ = rest.rpartition(":")
    return host.strip("[]") or peer


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(
        self,
        authenticator: Authenticator,
        listener: str,
        scope: Scope,
        retry_metadata: Callable[..., tuple[tuple[str, bytes], ...]],
    ) -> None:
        self._authenticator = authenticator
        self._listener = listener
        self._scope = scope
        self._retry_metadata = retry_metadata
        self._guarded: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        method = details.method  # type: ignore[attr-defined]
        if handler is None or handler.unary_unary is None or method.startswith(OPEN_SERVICES):
            return handler
        guarded = self._guarded.get(method)
        if guarded is None:
            guarded = self._guarded[method] = grpc.unary_unary_rpc_method_handler(
                self._guard(handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return guarded

    def _guard(self, behavior: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]) -> Any:
        async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
            authorization = None
            for key, value in context.invocation_metadata() or ():
                if key == "authorization":
                    authorization = value if isinstance(value, str) else value.decode()
                    break
            refusal = self._authenticator.check(
                self._listener, self._scope, authorization, peer_address(context.peer())
            )
            if refusal is not None:
                await self._abort(context, refusal)
            return await behavior(request, context)

        return guarded

    async def _abort(self, context: grpc.aio.ServicerContext, refusal: Refusal) -> None:
        if refusal.retry_after:
            code = grpc.StatusCode.RESOURCE_EXHAUSTED
            trailers = self._retry_metadata(refusal.retry_after, refusal.message, code_pb2.RESOURCE_EXHAUSTED)
            await context.abort(code, refusal.message, trailing_metadata=trailers)
        await context.abort(_CODES[refusal.status], refusal.message)
