from __future__ import annotations

import unicodedata
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from starlette.concurrency import run_in_threadpool

from glioscope_common.records.access import AuditAction
from glioscope_gateway.audit.service import AuditNote
from glioscope_gateway.auth.deps import current_principal
from glioscope_gateway.auth.principal import Principal
from glioscope_gateway.auth.schemas import MeOut, RefreshIn, TokenOut
from glioscope_gateway.client_address import request_client_address
from glioscope_gateway.deps import Container, container

router = APIRouter(prefix="/api/auth", tags=["auth"])


def client_ip(request: Request) -> str:
    return request_client_address(request) or "unknown"


def account_key(username: str) -> str:
    """The per-account bucket's key: `Admin`, ` admin` and `ａｄｍｉｎ` share one."""
    return unicodedata.normalize("NFKC", username).strip().casefold()


@router.post("/token", response_model=TokenOut, summary="Sign in with a username and password (OAuth2 password form)")
async def token(
    request: Request,
    username: Annotated[str, Form(min_length=1, max_length=64)],
    password: Annotated[str, Form(min_length=1, max_length=256)],
    c: Container = Depends(container),
) -> TokenOut:
    request.state.audit = AuditNote(AuditAction.failed_sign_in, actor=username, role="-")
    c.signin_limiter.hit(client_ip(request))
    account = account_key(username)
    c.signin_account_limiter.hit(account)
    pair = await run_in_threadpool(c.auth.sign_in, username, password)
    c.signin_account_limiter.refund(account)  # only failed attempts count against the account
    request.state.audit = AuditNote(AuditAction.signed_in, actor=username, role="-")
    return TokenOut(access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in)


@router.post("/refresh", response_model=TokenOut, summary="A new access token and a new refresh token (the old one is spent)")
async def refresh(request: Request, body: RefreshIn, c: Container = Depends(container)) -> TokenOut:
    c.signin_limiter.hit(client_ip(request))
    pair = await run_in_threadpool(c.auth.refresh, body.refresh_token)
    return TokenOut(access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in)


@router.get("/me", response_model=MeOut, summary="Who the token or API key belongs to")
def me(principal: Principal = Depends(current_principal)) -> MeOut:
    return MeOut(subject=principal.subject, role=principal.role,
                 projects=None if principal.projects is None else list(principal.projects),
                 kind=principal.kind, deidentified=principal.deidentified)
