"""FastAPI dependencies as `Annotated` aliases: a route names what it needs by type."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy import Engine

from api.auth import Caller, authenticate
from api.config import ApiConfig
from api.state import ApiState
from rmscore.settings import Settings


def get_state(request: Request) -> ApiState:
    return request.app.state.rmscore


StateDep = Annotated[ApiState, Depends(get_state)]


def get_settings(state: StateDep) -> Settings:
    return state.settings


def get_config(state: StateDep) -> ApiConfig:
    return state.config


def get_db(state: StateDep) -> Engine:
    return state.db


def get_caller(
    request: Request,
    state: StateDep,
    authorization: Annotated[str | None, Header(description="Bearer API key", include_in_schema=False)] = None,
) -> Caller:
    # `api.guard.RequestGuard` authenticated every /v1/* request before its body was read.
    caller = request.scope.get("state", {}).get("caller")
    if isinstance(caller, Caller):
        return caller
    # A plain def: FastAPI runs it in a thread, so the key's slow hash never blocks the event loop.
    return authenticate(state.db, state.key_cache, authorization, enabled=state.settings.auth == "enabled")


SettingsDep = Annotated[Settings, Depends(get_settings)]
ConfigDep = Annotated[ApiConfig, Depends(get_config)]
DbDep = Annotated[Engine, Depends(get_db)]
CallerDep = Annotated[Caller, Depends(get_caller)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=256,
        description="Retrying with the same key returns the same job instead of creating another.",
    ),
]
