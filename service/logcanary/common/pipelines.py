"""What a CI system tells a job about its pipeline run, read from its variables: the run's URL (an analysis links
back to the run that asked for it) and an id for the release a run deploys (shared by every gate of that run)."""

from __future__ import annotations

import re
from collections.abc import Mapping

_NOT_IN_RELEASE = re.compile(r"[^A-Za-z0-9._:@+-]+")


def pipeline_url(environ: Mapping[str, str]) -> str | None:
    """The run's web page: GitLab CI, GitHub Actions, Jenkins, Buildkite or CircleCI (None elsewhere)."""
    if environ.get("CI_PIPELINE_URL"):
        return environ["CI_PIPELINE_URL"]
    if environ.get("GITHUB_RUN_ID") and environ.get("GITHUB_REPOSITORY"):
        server = environ.get("GITHUB_SERVER_URL") or "https://github.com"
        return f"{server}/{environ['GITHUB_REPOSITORY']}/actions/runs/{environ['GITHUB_RUN_ID']}"
    for name in ("BUILD_URL", "BUILDKITE_BUILD_URL", "CIRCLE_BUILD_URL"):
        if environ.get(name):
            return environ[name]
    return None


def pipeline_release(environ: Mapping[str, str], environment: str | None = None) -> str | None:
    """A release id for this run (``gitlab-8812``, ``github-7741-2``; with the environment appended, so a run's dev
    and prod stages are two releases), or None outside a known CI system."""
    if environ.get("CI_PIPELINE_ID"):
        run = f"gitlab-{environ['CI_PIPELINE_ID']}"
    elif environ.get("GITHUB_RUN_ID"):
        run = f"github-{environ['GITHUB_RUN_ID']}-{environ.get('GITHUB_RUN_ATTEMPT') or '1'}"
    elif environ.get("BUILDKITE_BUILD_NUMBER"):
        run = f"buildkite-{environ['BUILDKITE_BUILD_NUMBER']}"
    elif environ.get("BUILD_TAG"):  # Jenkins: jenkins-<job>-<number>
        run = environ["BUILD_TAG"]
    else:
        return None
    text = f"{run}-{environment}" if environment else run
    return _NOT_IN_RELEASE.sub("-", text)[:128].strip("-.:@+_") or None
