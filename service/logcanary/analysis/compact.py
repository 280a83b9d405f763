"""The compact form of a verdict (``compact=true`` on ``/v1/verdict``): bounded size, same decision.

Argo Rollouts' ``web`` metric provider stores the JSON it selects as the measurement's value in the
AnalysisRun, an etcd object that holds every measurement of the run. A failing verdict with ten anomalies
and five verbatim stack traces each is hundreds of KB. The compact form keeps what a gate decides on and
what a person reads first: verdict, risk, reason, reason_code, the counts and the thresholds unchanged,
and the strongest anomalies with one shortened example each. It stays a valid ``Verdict``.
"""

from __future__ import annotations

import orjson

from logcanary.common.text import cut
from logcanary.schemas import Anomaly, Verdict

COMPACT_MAX_BYTES = 3072  # the stored value, measured as Go's encoder writes it (it escapes < > & as \u00XX)
COMPACT_ANOMALIES = 3  # the strongest anomalies kept; anomaly_count still says how many there are
COMPACT_LIST_ITEMS = 3  # examples / template ids / hosts per anomaly, vanished and suppressed entries
COMPACT_TEXT_CHARS = 200  # templates and examples are cut to this many characters


def _cut(text: str, limit: int = COMPACT_TEXT_CHARS) -> str:
    return cut(text, limit)


def stored_size(verdict: Verdict) -> int:
    """Bytes of the verdict as Argo Rollouts stores it (Go's JSON encoder escapes <, > and & to 6 bytes)."""
    body = orjson.dumps(verdict.model_dump(mode="json"))
    return len(body) + 5 * (body.count(b"<") + body.count(b">") + body.count(b"&"))


def _anomaly(anomaly: Anomaly, examples: int) -> Anomaly:
    return anomaly.model_copy(
        update={
            "template": _cut(anomaly.template),
            "template_ids": anomaly.template_ids[:COMPACT_LIST_ITEMS],
            "examples": [_cut(example) for example in anomaly.examples[:examples]],
            "baseline_examples": [_cut(example) for example in anomaly.baseline_examples[:examples]],
            "hosts": anomaly.hosts[:COMPACT_LIST_ITEMS],
        }
    )


def compact(verdict: Verdict, max_bytes: int = COMPACT_MAX_BYTES) -> Verdict:
    """``verdict`` with at most 3 anomalies (one example each), 3 vanished, 3 suppressed and 3 reworded entries, texts
    cut to 200 characters; entries are then dropped, least important first, until it fits ``max_bytes``."""
    vanished = [v.model_copy(update={"template": _cut(v.template)}) for v in verdict.vanished[:COMPACT_LIST_ITEMS]]
    suppressed = [s.model_copy(update={"template": _cut(s.template)}) for s in verdict.suppressed[:COMPACT_LIST_ITEMS]]
    reworded = [
        r.model_copy(update={"template": _cut(r.template), "baseline_template": _cut(r.baseline_template)})
        for r in verdict.reworded[:COMPACT_LIST_ITEMS]
    ]
    anomalies = [_anomaly(a, 1) for a in verdict.anomalies[:COMPACT_ANOMALIES]]
    result = verdict.model_copy(
        update={"anomalies": anomalies, "vanished": vanished, "suppressed": suppressed, "reworded": reworded}
    )
    while stored_size(result) > max_bytes:
        if result.reworded:
            result.reworded = result.reworded[:-1]
        elif result.vanished:
            result.vanished = result.vanished[:-1]
        elif result.suppressed:
            result.suppressed = result.suppressed[:-1]
        elif any(a.examples for a in result.anomalies):
            result.anomalies = [_anomaly(a, 0) for a in result.anomalies]
        elif len(result.anomalies) > 1:
            result.anomalies = result.anomalies[:-1]
        else:
            break  # the verdict, its reason and one anomaly's identity are never dropped
    return result
