"""The links logcanary hands to people (the gate's report, notifications, the analyses list): each opens the web page
on exactly the verdict a deploy tool acted on, never a live page that changes once the canary stops logging."""

from __future__ import annotations

from urllib.parse import urlencode


def analysis_page(base_url: str, analysis_id: str, cluster: str | None = None) -> str:
    """The page of an analysis as it published its verdict (``/ui?analysis=``), with a cluster (the top anomaly's)
    open. The page links from there to the live verdict of the same question."""
    query = {"analysis": analysis_id}
    if cluster:
        query["expand"] = cluster
    return f"{base_url.rstrip('/')}/ui?{urlencode(query)}"


def release_page(base_url: str, release: str) -> str:
    """The overview page of a release: its combined verdict and each service's, each linking to the analysis as it
    published its verdict (:func:`analysis_page`)."""
    return f"{base_url.rstrip('/')}/ui?{urlencode({'view': 'release', 'release': release})}"
