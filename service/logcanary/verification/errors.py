"""What a use case can refuse, in its own words; ``logcanary.api.errors`` maps each kind to one HTTP status."""

from __future__ import annotations


class NotFound(LookupError):
    """Something named does not exist (404)."""


class UnknownService(NotFound):
    def __init__(self, service: str) -> None:
        super().__init__(f"no events seen for service {service!r}")


class UnknownDeployment(NotFound):
    def __init__(self, service: str, deployment: str) -> None:
        super().__init__(f"no deployment {deployment!r} of service {service!r}")


class UnknownAnalysis(NotFound):
    """No such analysis (of that service), or it has published no verdict yet."""


class UnknownTemplate(NotFound):
    """Feedback naming a template id (and no template text) or a deployment the service does not know."""


class BadQuestion(ValueError):
    """A question that cannot be asked (a bad window, a map with neither canary nor analysis): 400."""


class AnalysisFinished(Exception):
    """Cancelling an analysis that already completed: its verdict is final (409)."""


class TooManyAnalyses(Exception):
    """More running analyses than LOGCANARY_MAX_RUNNING_ANALYSES: each is a metric series, so they are capped (429)."""
