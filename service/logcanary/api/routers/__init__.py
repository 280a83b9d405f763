"""The API's routers, one job each, in the order of the OpenAPI document."""

from __future__ import annotations

from fastapi import APIRouter

from logcanary.api.routers import analyses, events, feedback, health, releases, review, services, verdicts

ROUTERS: tuple[APIRouter, ...] = (
    health.router,
    events.router,
    verdicts.router,
    analyses.router,
    releases.router,
    feedback.router,
    services.router,
    review.router,
)
