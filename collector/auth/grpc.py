"""The authenticator as a grpc.aio server interceptor: metadata ``authorization: Bearer <key>``.

A refusal is UNAUTHENTICATED (no or wrong key), PERMISSION_DENIED (a key without the scope) or
RESOURCE_EXHAUSTED with a RetryInfo (too many wrong keys from the address). The health service stays open.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast
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


# An asyncio server's method behaviour is a coroutine function (grpc-stubs types only the synchronous one).
Behavior = Callable[[Any, "grpc.aio.ServicerContext[Any, Any]"], Awaitable[Any]]

if TYPE_CHECKING:  # generic in grpc-stubs only
    _ServerInterceptor = grpc.aio.ServerInterceptor[Any, Any]
else:
    _ServerInterceptor = grpc.aio.ServerInterceptor


class AuthInterceptor(_ServerInterceptor):
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
        self._guarded: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(details)
        method = details.method
        if handler is None or handler.unary_unary is None or method.startswith(OPEN_SERVICES):
            return handler
        guarded = self._guarded.get(method)
        if guarded is None:
            guarded = self._guarded[method] = grpc.unary_unary_rpc_method_handler(
                self._guard(cast(Behavior, handler.unary_unary)),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return guarded

    def _guard(self, behavior: Behavior) -> Behavior:
        async def guarded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
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

    async def _abort(self, context: grpc.aio.ServicerContext[Any, Any], refusal: Refusal) -> None:
        if refusal.retry_after:
            code = grpc.StatusCode.RESOURCE_EXHAUSTED
            trailers = self._retry_metadata(refusal.retry_after, refusal.message, code_pb2.RESOURCE_EXHAUSTED)
            await context.abort(code, refusal.message, trailing_metadata=trailers)
        await context.abort(_CODES[refusal.status], refusal.message)
