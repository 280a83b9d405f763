"""What a route may depend on: narrow providers of the runtime's parts (as FastAPI's full-stack template's deps.py),
so a router names exactly what it uses and never reaches through the whole runtime."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from logcanary.ingestion.intake import Intake
from logcanary.live.state import LiveState
from logcanary.runtime import Runtime
from logcanary.settings import HttpSettings, LimitSettings
from logcanary.verification.analyses import Analyses
from logcanary.verification.queries import History
from logcanary.verification.reviews import Reviews
from logcanary.verification.rules import Rules
from logcanary.verification.verdicts import Verdicts


def runtime_of(request: Request) -> Runtime:
    return cast(Runtime, request.app.state.runtime)


def _verdicts(request: Request) -> Verdicts:
    return runtime_of(request).verdicts


def _analyses(request: Request) -> Analyses:
    return runtime_of(request).analyses


def _history(request: Request) -> History:
    return runtime_of(request).history


def _rules(request: Request) -> Rules:
    return runtime_of(request).rules


def _reviews(request: Request) -> Reviews:
    return runtime_of(request).reviews


def _intake(request: Request) -> Intake:
    return runtime_of(request).intake


def _state(request: Request) -> LiveState:
    return runtime_of(request).state


def _http(request: Request) -> HttpSettings:
    return runtime_of(request).settings.http


def _limits(request: Request) -> LimitSettings:
    return runtime_of(request).settings.limits


VerdictsDep = Annotated[Verdicts, Depends(_verdicts)]
AnalysesDep = Annotated[Analyses, Depends(_analyses)]
HistoryDep = Annotated[History, Depends(_history)]
RulesDep = Annotated[Rules, Depends(_rules)]
ReviewsDep = Annotated[Reviews, Depends(_reviews)]
IntakeDep = Annotated[Intake, Depends(_intake)]
StateDep = Annotated[LiveState, Depends(_state)]
HttpSettingsDep = Annotated[HttpSettings, Depends(_http)]
LimitsDep = Annotated[LimitSettings, Depends(_limits)]
RuntimeDep = Annotated[Runtime, Depends(runtime_of)]
"""Health only: liveness and readiness are about the whole process."""
