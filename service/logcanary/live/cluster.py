"""What keeps the replicas of one cluster from disagreeing: the settings they must share, and who they are.

Two replicas that count the same topics with other settings answer the same question differently (one pass,
one fail), and a replica that joins the raw topics' consumer group with another store or topic takes partitions
whose events its peers never see. Neither shows anywhere unless it is refused, so:

* the settings that change counts or verdicts (``logcanary.settings.CLUSTER_FIELDS``) are written to the shared
  store by the first replica; a replica whose settings differ refuses to start, naming each difference, and a
  running replica whose settings stop being the cluster's (``logcanary cluster adopt``) stops;
* every Kafka client names itself ``logcanary/<mode>/<settings fingerprint>/<host>.<pid>``, so that a process
  that has just joined a consumer group reads its members before counting anything (logcanary.ingestion.kafka.
  membership) and refuses a group shared with processes of another mode or other settings: a single node with a
  store of its own, or a replica pointed at another database, which the shared store cannot see.

Pure: no I/O, the store and the broker are asked by the callers.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

import orjson

ADOPT_HINT = (
    "start it with the cluster's settings; to change the cluster's, run `logcanary cluster adopt` with the new "
    "ones (README: 'Replicas that cannot disagree')"
)


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """The settings a replica runs with that its peers must share, by variable name."""

    values: Mapping[str, object]

    @property
    def body(self) -> str:
        """As stored: JSON, keys sorted (the fingerprint is of these bytes)."""
        return orjson.dumps(dict(self.values), option=orjson.OPT_SORT_KEYS).decode()

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.body.encode()).hexdigest()[:12]

    @classmethod
    def parse(cls, body: str) -> ClusterSettings:
        values = orjson.loads(body)
        return cls(values if isinstance(values, dict) else {})

    def differences(self, cluster: ClusterSettings) -> list[str]:
        """Each setting that differs, worded for the operator: its name, this replica's value, the cluster's."""
        out = []
        for name in sorted(set(self.values) | set(cluster.values)):
            mine, theirs = self.values.get(name, "(unknown here)"), cluster.values.get(name, "(not set there)")
            if mine != theirs:
                out.append(f"{name} is {_show(mine)} here but {_show(theirs)} in the cluster")
        return out

    def refusal(self, cluster: ClusterSettings, where: str) -> str | None:
        """Why this replica must not run beside the cluster's (None: it may)."""
        if cluster.fingerprint == self.fingerprint:
            return None
        differences = self.differences(cluster) or [f"settings fingerprint {self.fingerprint} != {cluster.fingerprint}"]
        return f"this replica's settings are not the cluster's ({where}): {'; '.join(differences)}. {ADOPT_HINT}"


def _show(value: object) -> str:
    return orjson.dumps(value).decode()


_MEMBER = re.compile(r"^logcanary/(single|scale-out)/([0-9a-f]{12})/(.+)$")
_MEMBER_SUFFIX = re.compile(r"-[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")  # a broker's member UUID


class Member(NamedTuple):
    """A logcanary process in a consumer group, as its Kafka client id names it."""

    mode: str  # single | scale-out
    fingerprint: str
    process: str  # host.pid

    @property
    def client_id(self) -> str:
        return f"logcanary/{self.mode}/{self.fingerprint}/{self.process}"

    @classmethod
    def parse(cls, client_id: str, member_id: str = "") -> Member | None:
        """From a group member's client id, or from its member id (brokers prefix it with the client id; some,
        Tansu among them, describe members with an empty client id). None: not a logcanary of this kind."""
        text = client_id or _MEMBER_SUFFIX.sub("", member_id)
        found = _MEMBER.match(text)
        return None if found is None else cls(found.group(1), found.group(2), found.group(3))

    def conflict(self, other: Member) -> str | None:
        """Why ``other`` in the same consumer group generation makes this process wrong (None: they share the
        work correctly). Read after joining, the generation holds live members only: a crashed earlier
        incarnation of this process is not in it."""
        if other.mode != self.mode:
            return f"{other.process} runs {_MODES[other.mode]}, this replica {_MODES[self.mode]}"
        if other.fingerprint != self.fingerprint:
            return f"{other.process} runs other settings (fingerprint {other.fingerprint}, here {self.fingerprint})"
        if self.mode == "single" and other != self:
            return f"{other.process} is another single node: each would count only the partitions it is given"
        return None

    def conflicts(self, members: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
        """Of a group's (client id, member id) pairs: why each conflicting member makes this process wrong, and
        the members that are no logcanary of this kind (an older release, or another program: told, not refused,
        so that a rolling upgrade from an older release proceeds)."""
        reasons, strangers = [], []
        for client_id, member_id in members:
            other = Member.parse(client_id, member_id)
            if other is None:
                strangers.append(client_id or member_id)
            elif (reason := self.conflict(other)) is not None:
                reasons.append(reason)
        return reasons, strangers


_MODES = {
    "single": "as a single node (with a store of its own)",
    "scale-out": "scaled out (sharing a PostgreSQL store)",
}
