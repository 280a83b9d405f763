"""Every store operation, written once for SQLite and PostgreSQL over the same schema (logcanary.store.schema).

A checkpoint's engine rows, Kafka offsets, origin offsets and idempotency keys are ONE transaction, fenced in
scale-out. The statements are neutral SQL rendered per dialect (logcanary.store.dialect); how a connection opens,
how a transaction begins and ends, and how the file or server is kept are each store's own (sqlite.py, postgres.py).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from logcanary.schemas import DeploymentMark, Feedback, FeedbackChange
from logcanary.store.base import AnalysisRecord, Checkpoint, Fenced
from logcanary.store.codec import StoredState
from logcanary.store.dialect import Dialect

ENGINE_TABLES = ("miners", "miner_groups", "deployments", "deployment_templates")
SERVICE_TABLES = (*ENGINE_TABLES, "map_places")  # a dropped service leaves all (its map starts afresh if it returns)


class Session(Protocol):
    """Statements on one connection, in whatever transaction the store opened (SQL already rendered)."""

    def rows(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...
    def one(self, query: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None: ...
    def run(self, query: str, params: Sequence[Any] = ()) -> int: ...  # rows changed
    def many(self, query: str, rows: Iterable[Sequence[Any]]) -> None: ...


class Queries:
    """Every statement the store runs, in neutral SQL; an instance holds them rendered for one dialect."""

    miners = "SELECT service, state FROM miners"
    groups = "SELECT service, key, state FROM miner_groups"
    deployments = "SELECT service, deployment, state FROM deployments"
    templates = "SELECT service, deployment, template, state FROM deployment_templates"
    of_services = " WHERE service = ANY(?)"
    groups_order = " ORDER BY service, key{bytewise}"  # the order the codec keys groups in
    service_names = "SELECT service FROM miners UNION SELECT service FROM deployments ORDER BY service"

    owner_epochs = "SELECT shard, epoch FROM shard_owners WHERE topic = ? AND shard = ANY(?){for_update}"
    claim_shard = (
        "INSERT INTO shard_owners (topic, shard, epoch, owner) VALUES (?, ?, 1, ?) "
        "ON CONFLICT (topic, shard) DO UPDATE SET epoch = shard_owners.epoch + 1, owner = excluded.owner "
        "RETURNING epoch"
    )
    record_partitions = (
        "INSERT INTO repartition_topics (topic, partitions) VALUES (?, ?) ON CONFLICT (topic) DO NOTHING"
    )
    partitions = "SELECT partitions FROM repartition_topics WHERE topic = ?"
    origin_offsets = "SELECT shard, topic, partition, next_offset FROM origin_offsets WHERE shard = ANY(?)"
    offsets = "SELECT topic, partition, next_offset FROM offsets"
    idempotency_keys = "SELECT key, created_at, fingerprint FROM idempotency_keys WHERE created_at >= ?"
    idempotency_result = "SELECT status, body FROM idempotency_keys WHERE key = ?"
    # A claim is a key row with status 0 (no answer yet): taken by one replica at a time, answered or released.
    claim_key = (
        "INSERT INTO idempotency_keys (key, created_at, fingerprint, status, body) VALUES (?, ?, ?, 0, ?) "
        "ON CONFLICT (key) DO NOTHING"
    )
    claimed_key = "SELECT fingerprint, status, body FROM idempotency_keys WHERE key = ?"
    take_over_key = (
        "UPDATE idempotency_keys SET created_at = ?, fingerprint = ? WHERE key = ? AND status = 0 AND created_at < ?"
    )
    answer_key = "UPDATE idempotency_keys SET status = ?, body = ? WHERE key = ? AND status = 0"
    release_key = "DELETE FROM idempotency_keys WHERE key = ? AND status = 0"

    # One row (id 1): the settings the replicas share, set by the first replica or by `logcanary cluster adopt`.
    join_cluster = "INSERT INTO cluster_settings (id, fingerprint, body) VALUES (1, ?, ?) ON CONFLICT (id) DO NOTHING"
    cluster = "SELECT fingerprint, body FROM cluster_settings WHERE id = 1"
    adopt_cluster = (
        "INSERT INTO cluster_settings (id, fingerprint, body) VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE SET "
        "fingerprint = excluded.fingerprint, body = excluded.body, adopted_at = {now}"
    )

    upsert_origin = (
        "INSERT INTO origin_offsets (shard, topic, partition, next_offset) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (shard, topic, partition) DO UPDATE SET next_offset = excluded.next_offset"
    )
    drop_deployment = "DELETE FROM deployments WHERE service = ? AND deployment = ?"
    drop_deployment_templates = "DELETE FROM deployment_templates WHERE service = ? AND deployment = ?"
    drop_groups = "DELETE FROM miner_groups WHERE service = ?"
    drop_template = "DELETE FROM deployment_templates WHERE service = ? AND deployment = ? AND template = ?"
    upsert_miner = (
        "INSERT INTO miners (service, state) VALUES (?, ?) ON CONFLICT (service) DO UPDATE SET state = excluded.state"
    )
    upsert_group = (
        "INSERT INTO miner_groups (service, key, state) VALUES (?, ?, ?) "
        "ON CONFLICT (service, key) DO UPDATE SET state = excluded.state"
    )
    upsert_deployment = (
        "INSERT INTO deployments (service, deployment, state) VALUES (?, ?, ?) "
        "ON CONFLICT (service, deployment) DO UPDATE SET state = excluded.state"
    )
    upsert_template = (
        "INSERT INTO deployment_templates (service, deployment, template, state) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (service, deployment, template) DO UPDATE SET state = excluded.state"
    )
    upsert_offset = (
        "INSERT INTO offsets (topic, partition, next_offset) VALUES (?, ?, ?) "
        "ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset"
    )
    upsert_idempotency = (
        "INSERT INTO idempotency_keys (key, created_at, fingerprint, status, body) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (key) DO UPDATE SET created_at = excluded.created_at, fingerprint = excluded.fingerprint, "
        "status = excluded.status, body = excluded.body"
    )
    forget_keys_before = "DELETE FROM idempotency_keys WHERE created_at < ?"
    forget_keys_beyond = (
        "DELETE FROM idempotency_keys WHERE key IN "
        "(SELECT key FROM idempotency_keys ORDER BY created_at DESC{no_limit} OFFSET ?)"
    )

    add_feedback = "INSERT INTO feedback (id, service, created_at, body) VALUES (?, ?, ?, ?)"
    feedback = "SELECT body FROM feedback ORDER BY created_at, id"
    feedback_of = "SELECT body FROM feedback WHERE service = ? ORDER BY created_at, id"
    delete_feedback = "DELETE FROM feedback WHERE id = ?"
    update_feedback = "UPDATE feedback SET body = ? WHERE id = ?"
    add_feedback_change = "INSERT INTO feedback_changes (id, service, feedback_id, at, body) VALUES (?, ?, ?, ?, ?)"
    feedback_changes = "SELECT body FROM feedback_changes ORDER BY at, id"
    feedback_changes_of = "SELECT body FROM feedback_changes WHERE service = ? ORDER BY at, id"
    map_places = "SELECT template, x, y FROM map_places WHERE service = ?"
    add_map_place = (
        "INSERT INTO map_places (service, template, x, y) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (service, template) DO NOTHING"
    )
    save_mark = (
        "INSERT INTO deployment_marks (service, deployment, body) VALUES (?, ?, ?) "
        "ON CONFLICT (service, deployment) DO UPDATE SET body = excluded.body"
    )
    marks = "SELECT body FROM deployment_marks"
    save_analysis = (
        "INSERT INTO analyses (id, service, body, status, finished_at, environment, release, started_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET body = excluded.body, status = excluded.status, "
        "finished_at = excluded.finished_at, environment = excluded.environment, release = excluded.release"
    )
    release_analyses = "SELECT body FROM analyses WHERE release = ?"

    analyses = "SELECT body FROM analyses"
    analysis = "SELECT body FROM analyses WHERE id = ?"
    lease_analyses = (
        "UPDATE analyses SET lease_owner = ?, lease_until = ? WHERE status = 'running' AND "
        "(lease_owner IS NULL OR lease_owner = ? OR lease_until < ?) RETURNING body"
    )
    save_leased_analysis = (
        "UPDATE analyses SET body = ?, status = ?, finished_at = ? WHERE id = ? AND lease_owner = ? "
        "AND status = 'running'"
    )
    delete_analyses = "DELETE FROM analyses WHERE id = ANY(?)"

    def __init__(self, dialect: Dialect) -> None:
        for name, text in vars(Queries).items():
            if not name.startswith("_") and isinstance(text, str):
                setattr(self, name, dialect.render(text))
        self.drop_services = [dialect.render(f"DELETE FROM {table} WHERE service = ANY(?)") for table in SERVICE_TABLES]


def _json(model: Feedback | FeedbackChange) -> bytes:
    return model.model_dump_json().encode()


class SqlStore(ABC):
    """The whole store (:class:`~logcanary.store.base.SharedStore`) over one connection behind a lock; a subclass
    opens it and says how a session and a transaction go. Every method blocks: call it off the event loop."""

    def __init__(self, dialect: Dialect) -> None:
        self._lock = threading.Lock()
        self._dialect = dialect
        self._q = Queries(dialect)

    @abstractmethod
    def _session(self) -> AbstractContextManager[Session]:
        """The lock held, each statement its own transaction."""

    @abstractmethod
    def _transaction(self) -> AbstractContextManager[Session]:
        """The lock held, in one write transaction: committed at the end, rolled back on any error."""

    def _snapshot(self) -> AbstractContextManager[Session]:
        """Reads that must see one state of every table (PostgreSQL: a REPEATABLE READ transaction)."""
        return self._session()

    @abstractmethod
    def maintain(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    # -- engine state, offsets, idempotency keys: the checkpoint ----------------------------------------

    def load_state(self, services: Collection[str] | None = None) -> StoredState:
        """Every service's headers (or format-1 blobs) and rows, or only those of ``services`` (scale-out: a
        replica's share, a read of another's); groups in key order."""
        q, blob = self._q, self._dialect.blob
        where, params = ("", ()) if services is None else (q.of_services, (self._dialect.array(services),))
        stored = StoredState()
        with self._snapshot() as s:
            stored.miners = {name: blob(state) for name, state in s.rows(q.miners + where, params)}
            for service, key, state in s.rows(q.groups + where + q.groups_order, params):
                stored.groups.setdefault(service, []).append((key, blob(state)))
            for service, deployment, state in s.rows(q.deployments + where, params):
                stored.deployments[(service, deployment)] = blob(state)
            for service, deployment, template, state in s.rows(q.templates + where, params):
                stored.templates.setdefault((service, deployment), []).append((template, blob(state)))
        return stored

    def service_names(self) -> list[str]:
        with self._session() as s:
            return [name for (name,) in s.rows(self._q.service_names)]

    def load_offsets(self) -> dict[tuple[str, int], int]:
        with self._session() as s:
            rows = s.rows(self._q.offsets)
        return {(topic, partition): offset for topic, partition, offset in rows}

    def load_idempotency_keys(self, since: float) -> list[tuple[str, float, str]]:
        with self._session() as s:
            rows = s.rows(self._q.idempotency_keys, (since,))
        return [(key, created_at, fingerprint) for key, created_at, fingerprint in rows]

    def load_idempotency_result(self, key: str) -> tuple[int, bytes] | None:
        with self._session() as s:
            row = s.one(self._q.idempotency_result, (key,))
        return None if row is None else (int(row[0]), self._dialect.blob(row[1]))

    def claim_idempotency_key(
        self, key: str, fingerprint: str, now: float, stale_before: float
    ) -> tuple[str, int, bytes] | None:
        """Claims ``key`` for one request on any replica: None when this caller holds it now (first, or taking over
        a claim made before ``stale_before`` by a replica that never answered), else the key's (fingerprint,
        status, body): status 0 while another request holds it, the answer once it is given."""
        q = self._q
        with self._transaction() as s:
            if s.run(q.claim_key, (key, now, fingerprint, b"")) == 1:
                return None
            row = s.one(q.claimed_key, (key,))
            if row is None:  # released between the two statements: claim it now
                s.run(q.claim_key, (key, now, fingerprint, b""))
                return None
            if int(row[1]) == 0 and s.run(q.take_over_key, (now, fingerprint, key, stale_before)) == 1:
                return None
        return str(row[0]), int(row[1]), self._dialect.blob(row[2])

    def answer_idempotency_key(self, key: str, status: int, body: bytes) -> None:
        """The answer of a claimed key, for any replica to replay."""
        with self._session() as s:
            s.run(self._q.answer_key, (status, body, key))

    def release_idempotency_key(self, key: str) -> None:
        """A claim whose request counted nothing (Kafka refused its events): a retry may claim it again."""
        with self._session() as s:
            s.run(self._q.release_key, (key,))

    # -- the settings a scale-out cluster shares -------------------------------------------------------------

    def join_cluster(self, fingerprint: str, body: str) -> tuple[str, str]:
        """The cluster's (fingerprint, body): these, when no replica set them yet."""
        with self._transaction() as s:
            s.run(self._q.join_cluster, (fingerprint, body))
            row = s.one(self._q.cluster, ())
        assert row is not None
        return str(row[0]), str(row[1])

    def load_cluster(self) -> tuple[str, str] | None:
        with self._session() as s:
            row = s.one(self._q.cluster, ())
        return None if row is None else (str(row[0]), str(row[1]))

    def adopt_cluster(self, fingerprint: str, body: str) -> None:
        """Makes these the cluster's settings: replicas started with others stop (logcanary.live.cluster)."""
        with self._session() as s:
            s.run(self._q.adopt_cluster, (fingerprint, body))

    def write_checkpoint(self, checkpoint: Checkpoint) -> None:
        """The fence checked (scale-out), then deletions, upserts, offsets and idempotency keys: one transaction."""
        q, c = self._q, checkpoint
        with self._transaction() as s:
            if c.fence is not None:
                topic, epochs = c.fence
                # Locks the owner rows: a claim by the next owner waits for this transaction, or this one finds the
                # claim and writes nothing.
                current = dict(s.rows(q.owner_epochs, (topic, self._dialect.array(list(epochs)))))
                lost = sorted(shard for shard, epoch in epochs.items() if current.get(shard) != epoch)
                if lost:
                    raise Fenced(lost)
            s.many(q.upsert_origin, [(*key, offset) for key, offset in c.origins.items()])
            if c.dropped_services:
                services = self._dialect.array(c.dropped_services)
                for statement in q.drop_services:
                    s.run(statement, (services,))
            s.many(q.drop_deployment, c.dropped)
            s.many(q.drop_deployment_templates, [*c.dropped, *c.deployments_replaced])
            s.many(q.drop_groups, [(service,) for service in c.miners_replaced])
            s.many(q.drop_template, c.templates_gone)
            s.many(q.upsert_miner, c.miners.items())
            s.many(q.upsert_group, [(*key, state) for key, state in c.groups.items()])
            s.many(q.upsert_deployment, [(*key, state) for key, state in c.deployments.items()])
            s.many(q.upsert_template, [(*key, state) for key, state in c.templates.items()])
            s.many(q.upsert_offset, [(*key, offset) for key, offset in c.offsets.items()])
            s.many(
                q.upsert_idempotency, [(r.key, r.created_at, r.fingerprint, r.status, r.body) for r in c.idempotency]
            )
            s.run(q.forget_keys_before, (c.idempotency_horizon,))
            s.run(q.forget_keys_beyond, (c.idempotency_max_keys,))

    # -- scale-out: ownership of the repartition topic's partitions, fenced ----------------------------

    def claim_shards(self, topic: str, shards: Collection[int], owner: str) -> dict[int, int]:
        """Takes the partitions Kafka assigned to ``owner``: each one's epoch goes up by one, and the checkpoints
        of a former owner that still holds the old epoch are refused from now on (:class:`Fenced`)."""
        epochs: dict[int, int] = {}
        with self._transaction() as s:
            for shard in sorted(shards):  # one order for every replica: no deadlock between two claims
                row = s.one(self._q.claim_shard, (topic, shard, owner))
                assert row is not None
                epochs[shard] = int(row[0])
        return epochs

    def record_partitions(self, topic: str, partitions: int) -> int:
        """The repartition topic's partition count the stored state was built with: ``partitions`` if none was
        recorded yet (it is recorded now), else the recorded one."""
        with self._transaction() as s:
            s.run(self._q.record_partitions, (topic, partitions))
            row = s.one(self._q.partitions, (topic,))
        assert row is not None
        return int(row[0])

    def load_origin_offsets(self, shards: Collection[int]) -> dict[tuple[int, str, int], int]:
        """(shard, origin topic, origin partition) -> the next origin offset that shard's state has not counted."""
        with self._session() as s:
            rows = s.rows(self._q.origin_offsets, (self._dialect.array(list(shards)),))
        return {(shard, topic, partition): offset for shard, topic, partition, offset in rows}

    # -- what people and deploy tools create ----------------------------------------------------------------

    def add_feedback(self, feedback: Feedback) -> None:
        body = feedback.model_dump_json().encode()
        with self._session() as s:
            s.run(self._q.add_feedback, (feedback.id, feedback.service, feedback.created_at.isoformat(), body))

    def list_feedback(self, service: str | None = None) -> list[Feedback]:
        with self._session() as s:
            rows = s.rows(self._q.feedback) if service is None else s.rows(self._q.feedback_of, (service,))
        return [Feedback.model_validate_json(self._dialect.blob(body)) for (body,) in rows]

    def delete_feedback(self, feedback_id: str) -> bool:
        with self._session() as s:
            return s.run(self._q.delete_feedback, (feedback_id,)) > 0

    def change_feedback(self, change: FeedbackChange) -> bool:
        """A rule created, changed or undone, and the audit trail's entry of it: one transaction. False (and nothing
        written) when the rule to change or undo is not stored (another replica undid it)."""
        q, rule = self._q, change.rule
        with self._transaction() as s:
            if change.change == "created":
                s.run(q.add_feedback, (rule.id, rule.service, rule.created_at.isoformat(), _json(rule)))
            elif change.change == "changed":
                if s.run(q.update_feedback, (_json(rule), rule.id)) == 0:
                    return False
            elif s.run(q.delete_feedback, (rule.id,)) == 0:
                return False
            at = change.at.isoformat()
            s.run(q.add_feedback_change, (change.id, change.service, rule.id, at, _json(change)))
        return True

    def list_feedback_changes(self, service: str | None = None) -> list[FeedbackChange]:
        """The audit trail, oldest first."""
        q = self._q
        with self._session() as s:
            rows = s.rows(q.feedback_changes) if service is None else s.rows(q.feedback_changes_of, (service,))
        return [FeedbackChange.model_validate_json(self._dialect.blob(body)) for (body,) in rows]

    def load_places(self, service: str) -> dict[str, tuple[float, float]]:
        """The cluster map's places of a service's templates, by template id."""
        with self._session() as s:
            rows = s.rows(self._q.map_places, (service,))
        return {template: (float(x), float(y)) for template, x, y in rows}

    def save_places(self, service: str, places: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        """Records places not recorded yet and returns those stored for these templates: a place another replica
        gave first is kept (and returned), never overwritten."""
        with self._transaction() as s:
            s.many(self._q.add_map_place, [(service, template, x, y) for template, (x, y) in places.items()])
            rows = s.rows(self._q.map_places, (service,))
        return {template: (float(x), float(y)) for template, x, y in rows if template in places}

    def save_mark(self, mark: DeploymentMark) -> None:
        with self._session() as s:
            s.run(self._q.save_mark, (mark.service, mark.deployment, mark.model_dump_json().encode()))

    def load_marks(self) -> list[DeploymentMark]:
        with self._session() as s:
            rows = s.rows(self._q.marks)
        return [DeploymentMark.model_validate_json(self._dialect.blob(body)) for (body,) in rows]

    def save_analysis(self, record: AnalysisRecord) -> None:
        body = record.to_json()
        with self._session() as s:
            s.run(
                self._q.save_analysis,
                (
                    record.id,
                    record.service,
                    body,
                    record.status,
                    record.finished_at,
                    record.request.environment,
                    record.request.release,
                    record.started_at,
                ),
            )

    def load_analyses(self) -> list[AnalysisRecord]:
        with self._session() as s:
            rows = s.rows(self._q.analyses)
        return [AnalysisRecord.from_json(self._dialect.blob(body)) for (body,) in rows]

    def load_release(self, release: str) -> list[AnalysisRecord]:
        """The analyses of one release (by its indexed column: another replica's are there too)."""
        with self._session() as s:
            rows = s.rows(self._q.release_analyses, (release,))
        return [AnalysisRecord.from_json(self._dialect.blob(body)) for (body,) in rows]

    def load_analysis(self, analysis_id: str) -> AnalysisRecord | None:
        with self._session() as s:
            row = s.one(self._q.analysis, (analysis_id,))
        return None if row is None else AnalysisRecord.from_json(self._dialect.blob(row[0]))

    def lease_analyses(self, owner: str, now: float, until: float) -> list[AnalysisRecord]:
        """The running analyses ``owner`` may evaluate until ``until``: those it holds, and those whose lease
        ran out (their evaluator died or stopped), taken over. One evaluator at a time per analysis."""
        with self._session() as s:
            rows = s.rows(self._q.lease_analyses, (owner, until, owner, now))
        return [AnalysisRecord.from_json(self._dialect.blob(body)) for (body,) in rows]

    def save_leased_analysis(self, record: AnalysisRecord, owner: str) -> bool:
        """Saves an evaluation only while ``owner`` still holds the lease (False: another replica took over)."""
        params = (record.to_json(), record.status, record.finished_at, record.id, owner)
        with self._session() as s:
            return s.run(self._q.save_leased_analysis, params) > 0

    def delete_analyses(self, ids: list[str]) -> None:
        if ids:
            with self._session() as s:
                s.run(self._q.delete_analyses, (self._dialect.array(ids),))
