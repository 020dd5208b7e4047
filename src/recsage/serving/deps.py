"""Route dependencies: API-key scopes, rate limits, the served model."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from recsage.errors import RecsageError
from recsage.serving.auth import Principal
from recsage.serving.runtime import Runtime, ServedModel
from recsage.serving.schemas import (
    ApiError,
)

# ---- dependencies ----------------------------------------------------------------------------
bearer = HTTPBearer(
    auto_error=False, description="API key from `recsage keys add NAME --scopes ...`"
)


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def get_runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def require(scope: str) -> Callable[..., Awaitable[Principal | None]]:
    """A dependency that checks the bearer key, its scope and its rate limit."""

    async def check(request: Request, credentials: Credentials) -> Principal | None:
        rt = get_runtime(request)
        if not rt.settings.auth_required:
            return None
        challenge = {"WWW-Authenticate": "Bearer"}
        if credentials is None:
            raise ApiError(
                401,
                "unauthorized",
                "missing API key: send 'Authorization: Bearer <key>' "
                "(create one with `recsage keys add NAME --scopes read`)",
                headers=challenge,
            )
        principal = rt.keyring.verify(credentials.credentials)
        if principal is None:
            raise ApiError(401, "invalid_key", "unknown or revoked API key", headers=challenge)
        if not principal.allows(scope):
            raise ApiError(
                403,
                "forbidden",
                f"key '{principal.name}' lacks the '{scope}' scope this route needs",
            )
        ok, wait = rt.limiter.allow(principal.name)
        if not ok:
            raise ApiError(
                429,
                "rate_limited",
                f"rate limit of {rt.settings.rate_limit:g} requests/s "
                f"exceeded for key '{principal.name}'",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        return principal

    check.recsage_scope = scope  # type: ignore[attr-defined]  # read by route_scopes()
    return check


ReadKey = Annotated[Principal | None, Depends(require("read"))]


FeedbackKey = Annotated[Principal | None, Depends(require("feedback"))]


AdminKey = Annotated[Principal | None, Depends(require("admin"))]


def get_served(request: Request) -> ServedModel:
    try:
        return get_runtime(request).served()
    except RecsageError:
        raise ApiError(409, "no_model", "no model is loaded yet") from None
