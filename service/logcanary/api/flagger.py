"""The body Flagger sends to its webhooks, shared by the verdict and analysis routers."""

from __future__ import annotations

from typing import TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError

from logcanary.schemas import Name

_Model = TypeVar("_Model", bound=BaseModel)


class FlaggerWebhook(BaseModel):
    """The body Flagger sends to a webhook (``checksum`` and other keys are ignored); the query's fields,
    all optional, come as strings in ``metadata``."""

    name: Name = Field(description="The Canary's target: the service's name.")
    namespace: str | None = None
    phase: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)


def validated(model: type[_Model], data: dict[str, object]) -> _Model:
    """``data`` as ``model``; invalid webhook metadata answers 422 like any invalid body."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc
