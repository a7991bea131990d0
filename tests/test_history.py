"""The job history store (issue 15): the history consumer reads every job log into SQL exactly once.

Against SQLite and, where one answers, PostgreSQL (HISTORY_TEST_POSTGRES_URL, default the machine's
127.0.0.1:5432); each test has its own database, topic prefix and consumer group, and its own worker,
so the store is compared with exactly the topics the test made, record by record, read back with
kafka-python (another client than the app's).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from confluent_kafka import Producer
from kafka import KafkaConsumer, TopicPartition
from sqlalchemy import update

from settings import Settings, SettingsError, get_settings, load_settings
from stack.processes import Child, app_env
from tasks import progress, service
from tasks.clients import Clients, clients
from tasks.history.schema import job_records, jobs, metadata
from tasks.history.store import HistoryStore, StoredRecord, merged_row, stored_record
from tasks.joblog import log_place
from tasks.model import JobNotFound, JobState, JobStatus, LineKind, LogLine, parse_record
from tasks.progress import snapshot_key
from tests.apiclient import api_client, script_token
from tests.conftest import BOTH_LAYOUTS, run_module, wait_finished, wait_for

# The two slowest tests (a worker, the consumer, tens of thousands of records) run once per database and
# once per log layout, in pairs, rather than in all four combinations: the store's SQL depends on the
# database, the consumer's subscription on the layout, and neither on the other.
EACH_DATABASE_AND_LAYOUT = pytest.mark.parametrize(
    ("database_url", "log_layout"), [("sqlite", "topic"), ("postgresql", "shared")], indirect=["database_url"]
)
OWNER = "t-history0000000"
Key = tuple[str, int, int, str]


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new, empty database of the kind the test is run for."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'history.db'}"
        return
    server = request.getfixturevalue("postgres_url")
    name = f"jobstream_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = server.rpartition("/")
    yield f"{base}/{name}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def store(database_url: str) -> Iterator[HistoryStore]:
    history = HistoryStore(database_url)
    history.migrate()
    yield history
    history.close()


class History:
    """The test's own corner of Kafka (topic prefix, consumer group) and its consumers and worker."""

    def __init__(self, database_url: str, start_worker: Callable[..., Child], tmp_path: Path, log_layout: str) -> None:
        self.env = {
            "JOB_LOG_LAYOUT": log_layout,
            "JOB_LOG_TOPIC": f"hist-{uuid.uuid4().hex[:8]}",
            "KAFKA_TOPIC_PREFIX": f"hist-{uuid.uuid4().hex[:8]}-",
            "HISTORY_DATABASE_URL": database_url,
            "HISTORY_CONSUMER_GROUP": f"history-{uuid.uuid4().hex[:8]}",
            "STEP_DELAY_MS": "0",
        }
        self.settings: Settings = load_settings({**os.environ, **self.env})
        self.c = Clients(self.settings)
        self.store = HistoryStore(database_url)
        self.start_worker = start_worker
        self.log_dir = tmp_path
        self.children: list[Child] = []

    def worker(self) -> Child:
        return self.start_worker("history", **self.env)

    def consumer(self, command: str = "consume") -> Child:
        child = Child(
            f"history-{command}",
            [sys.executable, "-m", "tasks.history", command],
            self.log_dir / f"history-{len(self.children)}.log",
            {**app_env(), **self.env},
            die_with_parent=True,
        )
        self.children.append(child)
        child.wait_until(lambda: "job logs into" in child.log(), 60, "the history consumer's start")
        return child

    def submit(self, job_type: str, params: dict[str, object]) -> str:
        return service.submit_job(job_type, params, self.c, OWNER).job_id

    def kafka_records(self, job_ids: list[str]) -> set[Key]:
        """Every record of these jobs' logs (their topics, or their partitions of the shared topic, by
        key), read with kafka-python."""
        consumer = KafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers, enable_auto_commit=False, consumer_timeout_ms=2000
        )
        places = {log_place(self.settings, job_id) for job_id in job_ids}
        partitions = list({TopicPartition(place.topic, place.partition) for place in places})
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        keys = {job_id.encode() for job_id in job_ids}
        # records without a value are fences (see JobLogWriter.fence), not job records
        records = {
            (m.topic, m.partition, m.offset, m.value.decode(errors="replace"))
            for m in consumer
            if m.key in keys and m.value is not None
        }
        consumer.close()
        return records

    def stored(self) -> set[Key]:
        return self.store.record_keys()

    def close(self) -> None:
        for child in self.children:
            child.stop(15)
        self.store.close()
        if "reader" in self.c.__dict__:
            self.c.reader.close()


@pytest.fixture
def history(
    database_url: str, start_worker: Callable[..., Child], tmp_path: Path, log_layout: str
) -> Iterator[History]:
    corner = History(database_url, start_worker, tmp_path, log_layout)
    yield corner
    corner.close()


def assert_store_holds_exactly(history: History, job_ids: list[str], timeout_s: float = 60) -> None:
    """The store ends up with every record of these jobs' logs once, and each job's final state."""
    expected = history.kafka_records(job_ids)
    assert expected
    wait_for(lambda: history.stored() >= expected, timeout_s, "the store to hold every record")
    assert history.stored() == expected
    assert history.store.count_records() == len(expected)
    for job_id in job_ids:
        final = service.get_job(job_id, history.c)
        kept = history.store.job(job_id)
        assert kept is not None
        assert (kept.status, kept.step, kept.total, kept.result, kept.error, kept.job_type) == (
            final.status, final.step, final.total, final.result, final.error, final.job_type
        )  # fmt: skip
        assert kept.owner == OWNER
        assert kept.params == final.params


@EACH_DATABASE_AND_LAYOUT
def test_every_record_lands_in_the_store_once_though_its_consumer_is_killed_mid_batch(history: History) -> None:
    history.worker()
    consumer = history.consumer()
    big = history.submit("count", {"n": 60_000})
    others = [history.submit("chatty", {"lines": 50}), history.submit("progress_then_fail", {"fail_at": 3})]
    for job_id in [big, *others]:
        wait_finished(history.c, job_id, 120)
    # Killed as soon as the first batch is in, while it reads the rest: mid-batch or between two.
    wait_for(lambda: history.store.count_records() > 0, 60, "the first batch")
    consumer.kill_group()
    total = len(history.kafka_records([big, *others]))
    assert history.store.count_records() < total, "the consumer was not stopped before it caught up"
    history.consumer()
    assert_store_holds_exactly(history, [big, *others])
    failed = history.store.job(others[1])
    assert failed is not None
    assert failed.status is JobStatus.FAILED
    logged = history.store.page(others[1], 0, 1000).records
    assert any(isinstance(r, LogLine) and r.kind is LineKind.ERROR and "Traceback" in r.message for r in logged)


@EACH_DATABASE_AND_LAYOUT
def test_the_store_catches_up_after_being_down_and_is_rebuilt_from_kafka_alone(history: History) -> None:
    history.worker()
    consumer = history.consumer()
    first = history.submit("chatty", {"lines": 20})
    wait_finished(history.c, first)
    assert_store_holds_exactly(history, [first])
    consumer.stop()  # SIGTERM: the batch in hand is finished, the group left
    assert consumer.process.returncode == 0
    second = history.submit("count", {"n": 500})
    wait_finished(history.c, second)
    assert history.store.job(second) is None
    history.consumer()
    assert_store_holds_exactly(history, [first, second])

    history.store.clear()
    done = run_module(["tasks.history", "rebuild"], history.env, 120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"stored {len(history.kafka_records([first, second])):,} records"
    assert_store_holds_exactly(history, [first, second], timeout_s=1)


def test_a_dead_consumer_is_started_again_and_its_lag_is_a_figure_anyone_can_read(history: History) -> None:
    history.worker()
    supervisor = history.consumer("run")
    child = wait_for(supervisor.children, 30, "the consumer to start")[0]
    os.kill(child, signal.SIGKILL)
    wait_for(lambda: [pid for pid in supervisor.children() if pid != child], 30, "a new consumer")
    job_id = history.submit("count", {"n": 2000})
    wait_finished(history.c, job_id)
    assert_store_holds_exactly(history, [job_id])

    def caught_up() -> dict | None:
        done = run_module(["tasks.history", "lag"], history.env, 30)
        assert done.returncode == 0, done.stderr
        lag = json.loads(done.stdout)
        return lag if lag["members"] == 1 and lag["stored"] > 0 and lag["records_behind"] == 0 else None

    lag = wait_for(caught_up, 30, "the consumer to report it caught up", every_s=0.5)
    assert lag["seconds_behind"] == 0
    supervisor.stop()
    assert supervisor.process.returncode == 0


def test_records_that_are_not_job_records_are_skipped_and_nothing_else_is_held_up(history: History) -> None:
    history.worker()
    history.consumer()
    job_id = history.submit("count", {"n": 100})
    wait_finished(history.c, job_id)
    place = log_place(history.settings, job_id)
    producer = Producer({"bootstrap.servers": history.settings.kafka_bootstrap_servers})
    for junk in (b"not json", b"{}", b'{"job_id": "nope", "step": 1}', b"\xff\xfe"):
        producer.produce(place.topic, junk, job_id, place.partition)
    producer.produce(place.topic, LogLine(job_id, "after the junk", time.time()).to_json(), job_id, place.partition)
    producer.flush(10)
    wait_for(lambda: any("after the junk" in v for *_, v in history.stored()), 60, "the line after the junk")
    assert {value for *_, value in history.stored()} <= {value for *_, value in history.kafka_records([job_id])}
    assert history.store.count_records() == len(history.kafka_records([job_id])) - 4


# -- the store alone -------------------------------------------------------------------------


def states(job_id: str) -> list[JobState]:
    """A run's first record, a step and its final record."""
    return [
        JobState(job_id, 0, 10, JobStatus.RUNNING, 1000.0, params={"n": 10}, owner="b-1"),
        JobState(job_id, 5, 10, JobStatus.RUNNING, 1001.0, message="half"),
        JobState(job_id, 10, 10, JobStatus.SUCCEEDED, 1002.0, params={"n": 10}, result=[1]),
    ]


def records_of(job_id: str, items: list[JobState | LogLine]) -> list[StoredRecord]:
    """The items as the records of the job's topic, in order."""
    records = [stored_record(f"job-{job_id}", 0, offset, item.to_json().encode()) for offset, item in enumerate(items)]
    assert all(records)
    return [record for record in records if record is not None]


def test_the_furthest_state_wins_whatever_order_and_however_often_records_arrive(store: HistoryStore) -> None:
    job_id = str(uuid.uuid4())
    batch = records_of(job_id, [*states(job_id)[:2], LogLine(job_id, "a line", 1001.5), states(job_id)[2]])
    assert store.write(list(reversed(batch))) == 4
    assert store.write(batch) == 0
    assert store.write(batch[:2]) == 0
    kept = store.job(job_id)
    assert kept is not None
    assert (kept.status, kept.step, kept.result, kept.owner, kept.params) == (
        JobStatus.SUCCEEDED,
        10,
        [1],
        "b-1",
        {"n": 10},
    )
    assert kept.started_at == 1000.0
    assert store.count_records(job_id) == 4
    row = merged_row(None, states(job_id)[2])
    earlier = merged_row(row, states(job_id)[1])  # a finished job is never moved back; it began earlier
    assert earlier == row | {"first_ts": 1001.0}


def test_log_pages_come_from_the_store_in_order_with_kinds_and_limits(store: HistoryStore) -> None:
    job_id = str(uuid.uuid4())
    items: list[JobState | LogLine] = [states(job_id)[0]]
    items += [LogLine(job_id, f"line {i}", 1000.0 + i) for i in range(7)]
    items += [LogLine(job_id, "Traceback", 1010.0, level="error", kind=LineKind.ERROR), states(job_id)[2]]
    store.write(records_of(job_id, items))
    first = store.page(job_id, 0, 4)
    assert [r.to_json() for r in first.records] == [i.to_json() for i in items[:4]]
    assert (first.next_offset, first.end) == (4, False)
    rest = store.page(job_id, first.next_offset, 100)
    assert [r.to_json() for r in rest.records] == [i.to_json() for i in items[4:]]
    assert rest.end
    errors = store.page(job_id, 0, 100, frozenset({LineKind.ERROR}))
    assert [r.to_json() for r in errors.records] == [items[8].to_json()]
    assert store.page(str(uuid.uuid4()), 0, 10).records == []


def test_jobs_are_listed_newest_first_by_owner_status_and_type_a_page_at_a_time(store: HistoryStore) -> None:
    made = []
    for i in range(7):
        job_id = str(uuid.uuid4())
        owner, status = ("b-a" if i % 2 else "b-b"), (JobStatus.FAILED if i % 3 == 0 else JobStatus.SUCCEEDED)
        first = JobState(job_id, 0, 1, JobStatus.RUNNING, 2000.0 + i, owner=owner, params={})
        final = JobState(job_id, 1, 1, status, 2000.5 + i, job_type="count" if i < 5 else "primes")
        store.write(records_of(job_id, [first, final]))
        made.append((job_id, owner, status, final.job_type))
    newest_first = [job_id for job_id, *_ in reversed(made)]
    assert [s.job_id for s in store.jobs()] == newest_first
    pages, before = [], None
    while batch := store.jobs(limit=3, before=before):
        pages.append([s.job_id for s in batch])
        before = (batch[-1].started_at or 0.0, batch[-1].job_id)
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [job_id for page in pages for job_id in page] == newest_first
    assert [s.job_id for s in store.jobs(owner="b-a")] == [j for j, o, *_ in reversed(made) if o == "b-a"]
    failed = [j for j, _, st, _ in reversed(made) if st is JobStatus.FAILED]
    assert [s.job_id for s in store.jobs(statuses=[JobStatus.FAILED])] == failed
    assert [s.job_id for s in store.jobs(job_type="primes")] == [j for j, *_, t in reversed(made) if t == "primes"]
    assert store.jobs(owner="b-nobody") == []
    # By the start of the id: a digit or two (the newest jobs), more (the index), past a dash, all of it.
    for job_id, *_ in made[:3]:
        for length in (1, 2, 3, 8, 9, 10, 36):
            prefix = job_id[:length]
            expected = [j for j in newest_first if j.startswith(prefix)]
            assert [s.job_id for s in store.jobs(id_prefix=prefix)] == expected, prefix
    absent = next(p for p in (f"{i:03x}" for i in range(4096)) if not any(j.startswith(p) for j in newest_first))
    assert store.jobs(id_prefix=absent) == []


def test_the_migrations_make_the_tables_the_code_declares(store: HistoryStore) -> None:
    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    store.migrate()  # a second run changes nothing


def test_the_lag_sums_the_members_heard_from_lately(store: HistoryStore) -> None:
    store.report_lag("a", 10, 2.5, 100)
    store.report_lag("b", 5, 4.0, 50)
    store.report_lag("a", 3, 1.0, 120)
    lag = store.lag()
    assert (lag.records_behind, lag.seconds_behind, lag.members, lag.stored) == (8, 4.0, 2, 170)
    store.forget_member("b")
    assert store.lag().members == 1


def test_a_malformed_database_url_is_refused_without_showing_it() -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings({"HISTORY_DATABASE_URL": "not a url with secret-password"})
    assert "secret-password" not in str(refused.value)
    assert "HISTORY_DATABASE_URL" in str(refused.value)
    default = get_settings().history_database_url
    assert default == f"sqlite:///{get_settings().run_dir / 'history.db'}"


def test_an_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tasks.history", "lag"],
        env={**os.environ, "HISTORY_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("jobstream history: cannot migrate the history database")


# -- reads from the store ----------------------------------------------------------------------


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@BOTH_LAYOUTS
def test_reads_come_from_the_store_once_it_holds_a_jobs_end_and_from_kafka_while_it_lags(history: History) -> None:
    history.worker()
    consumer = history.consumer()
    stored = history.submit("chatty", {"lines": 20})
    wait_finished(history.c, stored)
    assert_store_holds_exactly(history, [stored])
    consumer.stop()
    lagging = history.submit("chatty", {"lines": 5})
    final = wait_finished(history.c, lagging)
    assert history.store.job(lagging) is None
    # Marks in the store only: what carries them was read from the store.
    with history.store.engine.begin() as conn:
        conn.execute(
            update(job_records)
            .where(job_records.c.job_id == stored, job_records.c.kind == "log")
            .values(value=LogLine(stored, "from the store", 1.0).to_json())
        )
        conn.execute(update(jobs).where(jobs.c.job_id == stored).values(result='"from the store"'))
    history.c.redis.delete(snapshot_key(stored), snapshot_key(lagging))  # Redis lost both

    assert service.get_job(stored, history.c, OWNER).result == "from the store"
    lines = service.read_log(stored, 0, 1000, history.c, frozenset({LineKind.LOG}), OWNER).records
    logged = sum(value.startswith('{"kind":"log"') for *_, value in history.kafka_records([stored]))
    assert [line.message for line in lines if isinstance(line, LogLine)] == ["from the store"] * logged
    with pytest.raises(JobNotFound):
        service.get_job(stored, history.c, "t-stranger000000")
    with pytest.raises(JobNotFound):
        service.read_log(stored, 0, 10, history.c, None, "t-stranger000000")

    # The store has not read the other job's end: Kafka answers for it.
    again = service.get_job(lagging, history.c, OWNER)
    assert (again.status, again.step, again.result) == (final.status, final.step, final.result)
    page = service.read_log(lagging, 0, 1000, history.c, None, OWNER)
    assert page.records == [parse_record(value) for *_, value in sorted(history.kafka_records([lagging]))]
    assert page.end


def test_the_api_lists_the_callers_jobs_from_the_store_newest_first_a_page_at_a_time() -> None:
    store = clients().history  # the API's own store
    store.migrate()
    me = clients().tokens.owner(script_token())
    made: list[tuple[str, str, JobStatus]] = []
    for i in range(7):
        job_id, owner = str(uuid.uuid4()), (me if i != 3 else "t-someoneelse000")
        status = JobStatus.FAILED if i % 2 else JobStatus.SUCCEEDED
        first = JobState(job_id, 0, 2, JobStatus.RUNNING, 3000.0 + i, owner=owner, params={"n": 2})
        store.write(records_of(job_id, [first, JobState(job_id, 2, 2, status, 3000.5 + i, params={"n": 2})]))
        made.append((job_id, str(owner), status))
    mine = [job_id for job_id, owner, _ in reversed(made) if owner == me]
    try:
        with api_client() as client:
            listed, cursor = [], None
            while True:
                answer = client.get("/api/jobs", params={"limit": 2, **({"before": cursor} if cursor else {})})
                assert answer.status_code == 200, answer.text
                listed += [job["job_id"] for job in answer.json()["jobs"]]
                if (cursor := answer.json()["next"]) is None:
                    break
            assert listed == mine
            failed = client.get("/api/jobs", params=[("status", "failed"), ("status", "cancelled")]).json()
            assert [job["job_id"] for job in failed["jobs"]] == [
                j for j, o, s in reversed(made) if o == me and s == "failed"
            ]
            assert failed["jobs"][0]["params"] == {"n": 2}
            assert client.get("/api/jobs", params={"type": "primes"}).json() == {"jobs": [], "next": None}
            for bad in ({"before": "yesterday"}, {"before": "1.0_not-a-job"}, {"limit": 0}, {"limit": 101},
                        {"status": "done"}, {"before": "x" * 100}):  # fmt: skip
                refused = client.get("/api/jobs", params=bad)
                assert refused.status_code == 422, (bad, refused.text)
        with api_client(token="jst_nope") as stranger:
            assert stranger.get("/api/jobs").status_code == 401
    finally:
        store.delete_jobs(job_id for job_id, *_ in made)


@pytest.mark.parametrize(("database_url", "log_layout"), [("sqlite", "shared")], indirect=["database_url"])
def test_in_the_shared_layout_the_index_comes_back_from_the_store_and_retention_forgets_jobs(
    history: History,
) -> None:
    history.worker()
    history.consumer()
    old, recent = history.submit("count", {"n": 5}), history.submit("count", {"n": 5})
    old_end = wait_finished(history.c, old).ts
    wait_finished(history.c, recent)
    assert_store_holds_exactly(history, [old, recent])
    c = history.c
    # Redis loses the index (and the old job's snapshot and the mark where its log begins).
    c.redis.delete(progress.INDEX_KEY, progress.INDEX_COMPLETE_KEY, snapshot_key(old), progress.log_start_key(old))
    assert service.rebuild_index(c) >= 2
    assert c.redis.sismember(progress.INDEX_KEY, old)
    assert c.redis.sismember(progress.INDEX_KEY, recent)
    assert service.get_job(old, c).status is JobStatus.SUCCEEDED  # the store knows it: no scan of Kafka
    page = service.read_log(old, 0, 100, c)
    assert page.records == [parse_record(v) for *_, v in sorted(history.kafka_records([old]))]

    # Past the old job's retention: condemned at once, its keys gone after the grace period; Kafka's
    # own retention removes its records (nothing is deleted per job).
    now = max(old_end, history.store.job(recent).ts) + c.settings.retention_s + 0.0001  # type: ignore[union-attr]
    c.reader.close()
    service.purge_expired_jobs(c, now=now)
    with pytest.raises(JobNotFound):
        service.get_job(old, c)
    assert set(service.purge_expired_jobs(c, now=now + service.PURGE_GRACE_S)) == {old, recent}
    assert not c.redis.exists(snapshot_key(old))
    assert history.settings.job_log_topic in c.admin._admin.list_topics(timeout=10).topics
