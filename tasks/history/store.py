"""Writes job records into the history store idempotently, and reads jobs and log pages back.

Any SQLAlchemy database URL works; SQLite (the default, a file under RUN_DIR) and PostgreSQL are
tested. A batch is one transaction: its records (a record already stored is skipped: its key is where
it is in Kafka) and the jobs they move forward (JobState.supersedes, so the order and repetition of
records does not matter).
"""

from __future__ import annotations

import fcntl
import json
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    Connection,
    Engine,
    Integer,
    and_,
    cast,
    create_engine,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from tasks.history.schema import history_members, job_records, jobs
from tasks.joblog import PAGE_MAX_BYTES, LogPage
from tasks.model import (
    JobState,
    JobStatus,
    LineKind,
    Record,
    is_job_id,
    parse_record,
    record_kind,
)

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
# A member that has not reported for this long is gone: its lag no longer counts.
MEMBER_STALE_S = 60.0
# Two writers (a rebuild beside the consumer) may insert the same new job at once: the loser retries.
WRITE_ATTEMPTS = 3
# Comes after every character a job id holds (hex digits and dashes): ids starting with p are >= p, < p + it.
ID_AFTER = "g"
# An id prefix this long is looked up in the primary key's index (1 job in 4,096 has it); a shorter one
# matches so many that the newest jobs hold a page of them.
ID_RANGE_MIN_CHARS = 3


class StoreError(RuntimeError):
    """The history database could not be reached or refused a write."""


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """One record of a job's log and where it is in Kafka (its key in the store)."""

    topic: str
    partition: int
    offset: int
    job_id: str
    kind: LineKind
    ts: float
    value: str
    state: JobState | None  # the parsed state, for a state record


def stored_record(topic: str, partition: int, offset: int, value: bytes) -> StoredRecord | None:
    """The record as the store keeps it; None for one that is not a job record (logged, skipped)."""
    try:
        record = parse_record(value)
        text_value = value.decode()
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("skipping %s[%d]@%d: not a job record (%s)", topic, partition, offset, exc)
        return None
    if not is_job_id(record.job_id):
        log.warning("skipping %s[%d]@%d: no job id", topic, partition, offset)
        return None
    state = record if isinstance(record, JobState) else None
    return StoredRecord(topic, partition, offset, record.job_id, record_kind(value), record.ts, text_value, state)


@dataclass(frozen=True)
class Lag:
    """How far the store is behind the job logs, by what its running consumers last said."""

    records_behind: int
    seconds_behind: float
    members: int
    stored: int


def engine_url(url: str) -> str:
    """PostgreSQL through psycopg 3 (the driver Jobstream ships) unless the URL names another."""
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL: readers never wait for the consumer's writes; a writer waits for another for up to 30 s.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def _loads(value: str | None) -> Any:
    return None if value is None else json.loads(value)


class HistoryStore:
    """The history database at `url`; `migrate()` brings its tables to the code's version."""

    def __init__(self, url: str) -> None:
        self.url = engine_url(url)
        parsed = make_url(self.url)
        self.dialect = parsed.get_backend_name()
        if self.dialect == "sqlite" and parsed.database not in (None, "", ":memory:"):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(self.url, pool_pre_ping=True)
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _migration_lock(self, conn: Connection) -> Iterator[None]:
        """One migration at a time when several consumers start together."""
        if self.dialect == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(7306311)"))
            yield
        elif self.dialect == "sqlite" and self.engine.url.database not in (None, "", ":memory:"):
            with open(f"{self.engine.url.database}.migrate-lock", "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                yield
        else:
            yield

    def migrate(self) -> None:
        """Create or upgrade the tables (Alembic, to the newest migration)."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        try:
            with self.engine.begin() as conn, self._migration_lock(conn):
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot migrate the history database: {exc}") from exc

    # -- writing -------------------------------------------------------------------------------

    def write(self, records: Sequence[StoredRecord]) -> int:
        """Store a batch in one transaction; records already stored are skipped. Returns how many
        were new."""
        if not records:
            return 0
        attempt = 1
        while True:
            try:
                with self.engine.begin() as conn:
                    added = self._insert_records(conn, records)
                    self._apply_states(conn, [r for r in records if r.state is not None])
                return added
            except IntegrityError as exc:  # another writer stored the same new job meanwhile
                if attempt == WRITE_ATTEMPTS:
                    raise StoreError(f"cannot write to the history database: {exc}") from exc
                attempt += 1
            except SQLAlchemyError as exc:
                raise StoreError(f"cannot write to the history database: {exc}") from exc

    def _insert_records(self, conn: Connection, records: Sequence[StoredRecord]) -> int:
        rows = [
            {
                "topic": r.topic,
                "partition": r.partition,
                "offset": r.offset,
                "job_id": r.job_id,
                "kind": r.kind.value,
                "ts": r.ts,
                "value": r.value,
            }
            for r in records
        ]
        existing = self._existing_keys(conn, rows)
        new = [row for row in rows if (row["topic"], row["partition"], row["offset"]) not in existing]
        if new:
            # Where the database can, a record another writer stored meanwhile is skipped, not an error.
            if self.dialect in ("sqlite", "postgresql"):
                dialect_insert = sqlite.insert if self.dialect == "sqlite" else postgresql.insert
                conn.execute(dialect_insert(job_records).on_conflict_do_nothing(), new)
            else:
                conn.execute(insert(job_records), new)
        return len(new)

    def _existing_keys(self, conn: Connection, rows: list[dict[str, Any]]) -> set[tuple[str, int, int]]:
        """Keys of these rows already stored, looked up by each partition's offset range."""
        ranges: dict[tuple[str, int], list[int]] = {}
        for row in rows:
            ranges.setdefault((row["topic"], row["partition"]), []).append(row["offset"])
        found: set[tuple[str, int, int]] = set()
        for (topic, partition), offsets in ranges.items():
            query = select(job_records.c.offset).where(
                job_records.c.topic == topic,
                job_records.c.partition == partition,
                job_records.c.offset.between(min(offsets), max(offsets)),
            )
            found |= {(topic, partition, offset) for offset in conn.scalars(query)}
        return found

    def _apply_states(self, conn: Connection, records: list[StoredRecord]) -> None:
        """Move each job's row forward to the furthest of its states (JobState.supersedes)."""
        job_ids = sorted({r.job_id for r in records})
        current = {
            row["job_id"]: dict(row) for row in conn.execute(select(jobs).where(jobs.c.job_id.in_(job_ids))).mappings()
        }
        changed: dict[str, dict[str, Any]] = {}
        for record in records:
            assert record.state is not None
            row = changed.get(record.job_id) or current.get(record.job_id)
            changed[record.job_id] = merged_row(row, record.state)
        new = [row for job_id, row in changed.items() if job_id not in current]
        if new:
            conn.execute(insert(jobs), new)
        for job_id, row in changed.items():
            if job_id in current and row != current[job_id]:
                conn.execute(update(jobs).where(jobs.c.job_id == job_id).values(row))

    def report_lag(self, member: str, records_behind: int, seconds_behind: float, stored: int) -> None:
        """What consumer `member` last saw of its lag, for `lag()` (the console, the bench)."""
        values = {
            "records_behind": records_behind,
            "seconds_behind": seconds_behind,
            "stored": stored,
            "updated_at": time.time(),
        }
        try:
            with self.engine.begin() as conn:
                if not conn.execute(
                    update(history_members).where(history_members.c.member == member).values(values)
                ).rowcount:
                    conn.execute(insert(history_members).values(member=member, **values))
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot write to the history database: {exc}") from exc

    def forget_member(self, member: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(history_members).where(history_members.c.member == member))

    def delete_jobs(self, job_ids: Iterable[str]) -> None:
        """Forget these jobs and their records (retention)."""
        ids = list(job_ids)
        if not ids:
            return
        with self.engine.begin() as conn:
            conn.execute(delete(job_records).where(job_records.c.job_id.in_(ids)))
            conn.execute(delete(jobs).where(jobs.c.job_id.in_(ids)))

    def finished_before(self, cutoff: float, limit: int = 1000) -> list[str]:
        """Jobs that ended before `cutoff` (epoch seconds), oldest first."""
        query = select(jobs.c.job_id).where(jobs.c.finished_at < cutoff).order_by(jobs.c.finished_at).limit(limit)
        with self._reading() as conn:
            return list(conn.scalars(query))

    def clear(self) -> None:
        """Empty every table (the first step of a rebuild)."""
        with self.engine.begin() as conn:
            for table in (job_records, jobs, history_members):
                conn.execute(delete(table))

    # -- reading -------------------------------------------------------------------------------

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        """A connection for reads; any failure of the database is a StoreError."""
        try:
            with self.engine.connect() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read the history database: {exc}") from exc

    def job(self, job_id: str) -> JobState | None:
        """The job's latest state as stored, or None when the store does not know it."""
        with self._reading() as conn:
            row = conn.execute(select(jobs).where(jobs.c.job_id == job_id)).mappings().first()
        return None if row is None else row_state(row)

    def jobs(
        self,
        owner: str | None = None,
        statuses: Iterable[JobStatus] = (),
        job_type: str | None = None,
        before: tuple[float, str] | None = None,
        limit: int = 50,
        id_prefix: str | None = None,
    ) -> list[JobState]:
        """Jobs newest first (by their first record), filtered; `before` is the (first_ts, job_id)
        of the last job of the previous page. `id_prefix` must be checked by the caller (hex digits
        and dashes: nothing LIKE reads as a pattern)."""
        query = select(jobs)
        if owner is not None:
            query = query.where(jobs.c.owner == owner)
        if id_prefix:
            query = query.where(jobs.c.job_id.like(f"{id_prefix}%"))
        if id_prefix and len(id_prefix) >= ID_RANGE_MIN_CHARS:
            # Read from the primary key's index: LIKE alone reads the jobs newest first until a page is
            # found, all of them for an id that is not there. (LIKE stays: under a collation that
            # ignores dashes, the range holds more.)
            query = query.where(jobs.c.job_id >= id_prefix, jobs.c.job_id < id_prefix + ID_AFTER)
        if wanted := [status.value for status in statuses]:
            query = query.where(jobs.c.status.in_(wanted))
        if job_type is not None:
            query = query.where(jobs.c.job_type == job_type)
        if before is not None:
            ts, job_id = before
            query = query.where(or_(jobs.c.first_ts < ts, and_(jobs.c.first_ts == ts, jobs.c.job_id < job_id)))
        query = query.order_by(jobs.c.first_ts.desc(), jobs.c.job_id.desc()).limit(limit)
        with self._reading() as conn:
            return [row_state(row) for row in conn.execute(query).mappings()]

    def finished_since(
        self, since: float, status: JobStatus, after: tuple[float, str] | None = None, limit: int = 1000
    ) -> list[JobState]:
        """Jobs of this status that ended at or after `since`, oldest end first; `after` is the
        (finished_at, job_id) of the last job of the previous batch."""
        query = select(jobs).where(jobs.c.finished_at >= since, jobs.c.status == status.value)
        if after is not None:
            ts, job_id = after
            query = query.where(or_(jobs.c.finished_at > ts, and_(jobs.c.finished_at == ts, jobs.c.job_id > job_id)))
        query = query.order_by(jobs.c.finished_at, jobs.c.job_id).limit(limit)
        with self._reading() as conn:
            return [row_state(row) for row in conn.execute(query).mappings()]

    def finished_per_minute(self, since: float) -> dict[int, dict[str, int]]:
        """How many jobs ended in each minute from `since` on, by status: {minute start: {status: n}}."""
        per_minute = jobs.c.finished_at / 60
        # SQLite's CAST truncates (the floor, for times after 1970); PostgreSQL's rounds.
        bucket = func.floor(per_minute) if self.dialect == "postgresql" else cast(per_minute, Integer)
        query = (
            select(bucket.label("minute"), jobs.c.status, func.count().label("n"))
            .where(jobs.c.finished_at >= since)
            .group_by(bucket, jobs.c.status)
        )
        counts: dict[int, dict[str, int]] = {}
        with self._reading() as conn:
            for minute, status, n in conn.execute(query):
                counts.setdefault(int(minute) * 60, {})[status] = int(n)
        return counts

    def page(self, job_id: str, offset: int, limit: int, kinds: frozenset[LineKind] | None = None) -> LogPage:
        """Like JobLogReader.page, from the store: at most `limit` records (and about PAGE_MAX_BYTES)
        of the job's log at or after position `offset`. `end` means the store holds no more."""
        query = select(job_records.c.offset, job_records.c.value).where(
            job_records.c.job_id == job_id, job_records.c.offset >= offset
        )
        if kinds is not None:
            query = query.where(job_records.c.kind.in_([kind.value for kind in kinds]))
        query = query.order_by(job_records.c.offset).limit(limit + 1)
        records: list[Record] = []
        next_offset, size = offset, 0
        with self._reading() as conn:
            for record_offset, value in conn.execute(query):
                if len(records) == limit or (records and size + len(value) > PAGE_MAX_BYTES):
                    return LogPage(records, record_offset, end=False)
                records.append(parse_record(value))
                size += len(value)
                next_offset = record_offset + 1
        return LogPage(records, next_offset, end=True)

    def first_offset(self, job_id: str) -> int | None:
        """The offset of the job's first stored record (where its log begins in its partition)."""
        query = select(func.min(job_records.c.offset)).where(job_records.c.job_id == job_id)
        with self._reading() as conn:
            found = conn.scalar(query)
        return None if found is None else int(found)

    def job_ids(self) -> list[str]:
        """Every job the store holds."""
        with self._reading() as conn:
            return list(conn.scalars(select(jobs.c.job_id)))

    def count_records(self, job_id: str | None = None) -> int:
        query = select(func.count()).select_from(job_records)
        if job_id is not None:
            query = query.where(job_records.c.job_id == job_id)
        with self._reading() as conn:
            return int(conn.scalar(query) or 0)

    def record_keys(self) -> set[tuple[str, int, int, str]]:
        """Every stored record's place in Kafka and value (for comparing the store with the topics)."""
        query = select(job_records.c.topic, job_records.c.partition, job_records.c.offset, job_records.c.value)
        with self._reading() as conn:
            return {(topic, partition, offset, value) for topic, partition, offset, value in conn.execute(query)}

    def lag(self) -> Lag:
        """The sum of what the consumers heard from within MEMBER_STALE_S last said."""
        query = select(history_members).where(history_members.c.updated_at > time.time() - MEMBER_STALE_S)
        with self._reading() as conn:
            rows = list(conn.execute(query).mappings())
        return Lag(
            records_behind=sum(int(row["records_behind"]) for row in rows),
            seconds_behind=max((float(row["seconds_behind"]) for row in rows), default=0.0),
            members=len(rows),
            stored=sum(int(row["stored"]) for row in rows),
        )


def merged_row(row: dict[str, Any] | None, state: JobState) -> dict[str, Any]:
    """The job's row after `state`: the furthest state wins; who submitted it and with what are kept
    from whichever record had them."""
    if row is None:
        base: dict[str, Any] = {"job_id": state.job_id, "owner": None, "params": None, "first_ts": state.ts}
        wins = True
    else:
        base = dict(row)
        wins = state.supersedes(JobStatus(row["status"]), int(row["step"]))
    merged = {
        **base,
        "owner": base["owner"] or state.owner,
        "params": _dumps(state.params) if state.params is not None else base["params"],
        "first_ts": min(base["first_ts"], state.ts),
    }
    if wins:
        merged |= {
            "job_type": state.job_type,
            "status": state.status.value,
            "step": state.step,
            "total": state.total,
            "result": _dumps(state.result),
            "error": state.error,
            "message": state.message,
            "updated_at": state.ts,
            "finished_at": state.ts if state.status.finished else None,
        }
    return merged


def row_state(row: Any) -> JobState:
    """A stored job as the state the service answers with."""
    return JobState(
        job_id=row["job_id"],
        step=int(row["step"]),
        total=int(row["total"]),
        status=JobStatus(row["status"]),
        ts=float(row["updated_at"]),
        started_at=float(row["first_ts"]),
        error=row["error"],
        job_type=row["job_type"],
        params=_loads(row["params"]),
        message=row["message"],
        result=_loads(row["result"]),
        owner=row["owner"],
    )
