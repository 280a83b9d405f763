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


class UnknownRelease(NotFound):
    """No analysis names that release (never started, or all deleted by retention)."""


class UnknownTemplate(NotFound):
    """Feedback naming a template id (and no template text) or a deployment the service does not know."""


class RuleConflict(Exception):
    """A feedback rule that would contradict a standing rule, or repeat one (409): the standing one is changed or
    undone instead."""

    def __init__(self, message: str, standing: str) -> None:
        super().__init__(message)
        self.standing = standing  # the id of the rule it clashes with


class UnknownRule(NotFound):
    """No feedback rule of that id (undone already, or never made)."""


class BadQuestion(ValueError):
    """A question that cannot be asked (a bad window, a map with neither canary nor analysis): 400."""


class BadSource(ValueError):
    """A log store source that cannot be used as given: no URL, a bad template, a query the store refuses (422,
    quoting the store)."""

    def __init__(self, message: str, store_message: str | None = None) -> None:
        super().__init__(message)
        self.store_message = store_message


class UnknownEnvironment(ValueError):
    """An analysis naming an environment outside LOGCANARY_ENVIRONMENTS (422)."""


class AnalysisFinished(Exception):
    """Cancelling an analysis that already completed: its verdict is final (409)."""


class TooManyAnalyses(Exception):
    """More running analyses than LOGCANARY_MAX_RUNNING_ANALYSES: each is a metric series, so they are capped (429)."""
