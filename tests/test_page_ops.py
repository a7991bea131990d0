"""The operator's console page (/ops) in real Chromium against the real app with the console on:
login, wrong and throttled passwords, logout, every owner's jobs paged, filtered and live, a worker
killed and shown gone, a chart receiving points, a bulk action behind its confirmation, 390 px and
dark; and its socket events sent without a login by a raw client, which get and change nothing."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from types import SimpleNamespace
from typing import cast

import pytest
from playwright.sync_api import BrowserContext, Locator, Page, expect

from settings import Settings
from stack.processes import VENV_BIN, Child, app_env, free_port, http_ok
from tasks import progress, service
from tasks.clients import Clients
from tasks.history.store import stored_record
from tasks.model import JobState, JobStatus
from tasks.ops import series, sessions
from tests.browser import TIMEOUT_S
from tests.conftest import WebApp, run_async, wait_for
from tests.test_ops_api import HASH, PASSWORD, store_job, stored_jobs  # noqa: F401 - stored_jobs is a fixture
from tests.test_page_faults import OwnApp
from tests.test_sockets import NOTIFY, ROOT, RawPage

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("no_backend_exceptions")]

OPS = f"{ROOT}.rxapp___state___ops____ops_state"
OPS_JOBS = f"{ROOT}.rxapp___state___ops_jobs____ops_jobs_state"
OPS_LIVE = f"{ROOT}.rxapp___state___ops_live____ops_live_state"
OPS_BULK = f"{ROOT}.rxapp___state___ops_bulk____ops_bulk_state"
OPS_LOG = f"{ROOT}.rxapp___state___ops_log____ops_log_state"
OWNER = "t-opspageowner000"
# Fields of the console's states that would show something an operator sees.
REVEALING = {"rows", "types", "workers", "waiting", "points", "queue_depth", "question", "report", "notice",
             "signed_in", "job_id", "has_older", "finished_last_hour"}  # fmt: skip


@pytest.fixture(scope="module")
def web() -> Iterator[WebApp]:
    """The app with the console on (memory state manager), for this module only: on ports and in a web
    folder of its own, since the session's app may be up too."""
    app = OwnApp("ops", 40, OPS_PASSWORD_HASH=HASH, OPS_LOGINS_PER_MINUTE="3")
    app.start()
    yield app
    app.stop()


def forget_login_tries(c: Clients) -> None:
    for key in c.redis.scan_iter(match=sessions.LOGIN_BUCKET_PREFIX + "*"):
        c.redis.delete(key)


@pytest.fixture(autouse=True)
def fresh_login_counts(c: Clients) -> None:
    """Each test's browser starts with no failed logins counted against its address."""
    forget_login_tries(c)


def open_ops(new_context: Callable[..., BrowserContext], web: WebApp, **options: object) -> Page:
    page = new_context(**options).new_page()
    page.goto(web.frontend + "/ops")
    expect(page.get_by_test_id("ops-login-form")).to_be_visible()
    return page


def try_password(page: Page, password: str) -> None:
    page.get_by_test_id("ops-password").fill(password)
    page.get_by_test_id("ops-login").click()


def log_in(page: Page) -> None:
    try_password(page, PASSWORD)
    expect(page.get_by_test_id("ops-console")).to_be_visible()


def signed_in(new_context: Callable[..., BrowserContext], web: WebApp, **options: object) -> Page:
    page = open_ops(new_context, web, **options)
    log_in(page)
    return page


def row(page: Page, job_id: str) -> Locator:
    return page.locator(f'[data-testid="ops-row"][data-job-id="{job_id}"]')


def listed_ids(page: Page) -> list[str]:
    return page.get_by_test_id("ops-row").evaluate_all("rows => rows.map((row) => row.dataset.jobId)")


def store_running(c: Clients, job_id: str, started: float, total: int) -> None:
    """A running job as the history store holds it: its first record only."""
    first = JobState(job_id, 0, total, JobStatus.RUNNING, started, job_type="count", owner=OWNER, params={"n": total})
    record = stored_record(f"ops-{job_id}", 0, 0, first.to_json().encode())
    assert record is not None
    c.history.write([record])


def test_wrong_password_then_throttled_then_login_and_logout(
    new_context: Callable[..., BrowserContext], web: WebApp, c: Clients
) -> None:
    page = open_ops(new_context, web)
    try_password(page, "not the password")
    expect(page.get_by_test_id("ops-login-error")).to_have_text("Wrong password.")
    expect(page.get_by_test_id("ops-console")).to_have_count(0)
    for _ in range(3):  # OPS_LOGINS_PER_MINUTE=3 in this module's app
        try_password(page, "still not it")
    expect(page.get_by_test_id("ops-login-error")).to_contain_text("Too many login attempts: try again in")
    assert not [cookie for cookie in page.context.cookies() if cookie["name"] == sessions.COOKIE_NAME]
    forget_login_tries(c)
    log_in(page)
    (cookie,) = [cookie for cookie in page.context.cookies() if cookie["name"] == sessions.COOKIE_NAME]
    assert cookie["httpOnly"]
    page.get_by_test_id("ops-logout").click()
    expect(page.get_by_test_id("ops-login-form")).to_be_visible()
    expect(page.get_by_test_id("ops-console")).to_have_count(0)
    assert not [cookie for cookie in page.context.cookies() if cookie["name"] == sessions.COOKIE_NAME]


def test_every_owners_jobs_paged_filtered_searched_and_a_running_row_live(
    new_context: Callable[..., BrowserContext],
    web: WebApp,
    c: Clients,
    stored_jobs: list[str],  # noqa: F811
) -> None:
    # 25 jobs newer than any other in the store: the first page is 20 of them, the next the other 5.
    base = time.time() + 3600
    made = [
        store_job(c, "count", base + i, JobStatus.FAILED if i % 10 == 0 else JobStatus.SUCCEEDED) for i in range(24)
    ]
    running = str(uuid.uuid4())
    store_running(c, running, base + 24, 100)
    made.append(running)
    stored_jobs.extend(made)
    c.redis.set(progress.snapshot_key(running), JobState(running, 7, 100, JobStatus.RUNNING, time.time()).to_json())
    page = signed_in(new_context, web)
    newest_first = made[::-1]
    expect(page.get_by_test_id("ops-row")).to_have_count(20)
    assert listed_ids(page) == newest_first[:20]
    expect(row(page, running).get_by_test_id("ops-step")).to_have_text("7/100")
    # Live: the running job's progress moves in its row, without a click.
    c.redis.set(progress.snapshot_key(running), JobState(running, 42, 100, JobStatus.RUNNING, time.time()).to_json())
    expect(row(page, running).get_by_test_id("ops-step")).to_have_text("42/100", timeout=5000)
    expect(row(page, made[12]).get_by_test_id("job-status")).to_have_text("succeeded")
    expect(row(page, made[10]).get_by_test_id("job-status")).to_have_text("failed")
    # The README's picture (assets/screenshot-ops.png) is a copy of this one, taken by hand.
    page.screenshot(path=c.settings.run_dir / "screenshot-ops.png")
    page.get_by_test_id("ops-older").click()
    expect(page.get_by_test_id("ops-page")).to_have_text("Page 2")
    assert listed_ids(page)[:5] == newest_first[20:25]
    page.get_by_test_id("ops-newer").click()
    expect(page.get_by_test_id("ops-page")).to_have_text("Page 1")
    # The status filter: the failed ones, newest first.
    page.get_by_test_id("ops-filter-status").select_option("failed")
    expect(row(page, made[0])).to_be_visible()
    assert listed_ids(page)[:3] == [made[20], made[10], made[0]]
    assert {s.lower() for s in page.get_by_test_id("job-status").all_inner_texts()} == {"failed"}
    page.get_by_test_id("ops-filter-status").select_option("all")
    # Search by the start of an id.
    page.get_by_test_id("ops-search").fill(made[5][:13])
    expect(page.get_by_test_id("ops-row")).to_have_count(1)
    assert listed_ids(page) == [made[5]]
    # Its log, read by the operator though the job is another owner's.
    row(page, made[5]).get_by_test_id("ops-log-open").click()
    expect(page.get_by_test_id("ops-log")).to_be_visible()
    expect(page.get_by_test_id("job-log-row").first).to_be_visible()


def test_a_worker_killed_with_sigkill_shows_gone(
    new_context: Callable[..., BrowserContext], web: WebApp, start_worker: Callable[..., Child]
) -> None:
    worker = start_worker("ops-page-doomed", concurrency=1)
    page = signed_in(new_context, web)
    page.get_by_test_id("ops-tab-workers").click()
    mine = page.locator(f'[data-testid="ops-worker"][data-pid="{worker.pid}"]')
    expect(mine.get_by_test_id("ops-worker-status")).to_have_text("online", timeout=15_000)
    worker.kill_group()  # SIGKILL: no shutdown handler runs
    expect(mine.get_by_test_id("ops-worker-status")).to_have_text("gone", timeout=20_000)
    expect(page.get_by_test_id("ops-queue-depth")).to_be_visible()


def test_a_chart_receives_the_minutes_points_live(
    new_context: Callable[..., BrowserContext],
    web: WebApp,
    c: Clients,
    stored_jobs: list[str],  # noqa: F811
) -> None:
    page = signed_in(new_context, web)
    page.get_by_test_id("ops-tab-charts").click()
    total = page.get_by_test_id("ops-finished-total")
    expect(total).to_contain_text("jobs finished in the last hour")
    before = int(total.inner_text().split()[0])
    now = time.time()
    stored_jobs.extend(store_job(c, "count", now - 2, JobStatus.SUCCEEDED, end=now) for _ in range(3))
    expect(total).to_contain_text(f"{before + 3} jobs finished", timeout=10_000)
    chart = page.get_by_test_id("ops-chart-finished")
    wait_for(lambda: chart.locator(".recharts-bar-rectangle").count() > 0, TIMEOUT_S, "a bar in the chart")


def test_cancel_every_queued_job_of_a_type_asks_first_and_says_what_it_did(
    new_context: Callable[..., BrowserContext], web: WebApp, c: Clients
) -> None:
    # No worker runs in this test: the jobs stay queued.
    queued = [service.submit_job("count", {"n": 5}, c, OWNER).job_id for _ in range(2)]
    page = signed_in(new_context, web)
    page.get_by_test_id("ops-tab-actions").click()
    page.get_by_test_id("ops-bulk-type").select_option("count")
    page.get_by_test_id("ops-cancel-queued").click()
    question = page.get_by_test_id("ops-confirm-question")
    expect(question).to_have_text(f"Cancel {len(queued)} queued count jobs?")
    assert all(service.get_job(job_id, c).status is JobStatus.QUEUED for job_id in queued), "asking does nothing"
    page.get_by_test_id("ops-confirm").click()
    expect(page.get_by_test_id("ops-report")).to_have_text(f"Cancelled {len(queued)} queued count jobs.")
    assert all(service.get_job(job_id, c).status is JobStatus.CANCELLED for job_id in queued)


def test_at_390_px_in_dark_mode_every_control_shows_without_overflow(
    new_context: Callable[..., BrowserContext],
    web: WebApp,
    settings: Settings,
    c: Clients,
    stored_jobs: list[str],  # noqa: F811
) -> None:
    long_params = {"text": "word " * 60, "seed": 12345678901234}
    stored_jobs.append(store_job(c, "text_stats", time.time() + 3600, JobStatus.FAILED, params=long_params))
    page = signed_in(new_context, web, viewport={"width": 390, "height": 844}, color_scheme="dark")
    expect(row(page, stored_jobs[0]).get_by_test_id("ops-rerun")).to_be_visible()
    expect(page.locator("html.dark")).to_have_count(1)
    expect(page.get_by_test_id("ops-filter-status")).to_be_visible()
    for testid in ("ops-logout", "ops-tab-jobs", "ops-tab-actions", "ops-search", "ops-rerun", "ops-log-open"):
        box = page.get_by_test_id(testid).first.bounding_box()
        assert box is not None, testid
        assert 0 <= box["x"] <= box["x"] + box["width"] <= 390, (testid, box)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=settings.run_dir / "screenshot-ops-390-dark.png", full_page=True)
    page.get_by_test_id("ops-tab-charts").click()
    expect(page.get_by_test_id("ops-chart-finished")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


def console_events(job_id: str, queued: str) -> list[tuple[str, dict[str, str]]]:
    """Every kind of console event, naming a stored job and a queued one."""
    return [
        (f"{OPS}.show_tab", {"tab": "workers"}),
        (f"{OPS_JOBS}.filter_status", {"value": "failed"}),
        (f"{OPS_JOBS}.search", {"prefix": job_id[:8]}),
        (f"{OPS_JOBS}.older", {}),
        (f"{OPS_JOBS}.cancel", {"job_id": queued}),
        (f"{OPS_JOBS}.rerun", {"job_id": job_id}),
        (f"{OPS_BULK}.ask", {"action": "cancel-queued"}),
        (f"{OPS_BULK}.confirm", {}),
        (f"{OPS_LOG}.open", {"job_id": job_id}),
        (f"{OPS}.refresh", {}),
    ]


def send_raw(web: WebApp, cookie: str | None, events: list[tuple[str, dict[str, str]]]) -> RawPage:
    """A raw socket.io client on /ops (with this ops cookie, if any) that sends `events` and waits until
    the backend has handled them all."""

    async def send() -> RawPage:
        raw = RawPage(web)
        router = {"pathname": "/ops", "asPath": "/ops"}
        await raw.sio.connect(
            f"{raw.url}?token={uuid.uuid4()}",
            headers={"Cookie": f"{sessions.COOKIE_NAME}={cookie}"} if cookie else {},
            auth={"event": {"name": f"{ROOT}.hydrate_and_load", "payload": {}, "router_data": router}},
            transports=["websocket"],
            namespaces=["/_event"],
            socketio_path="/_event",
            wait_timeout=20,
        )
        for name, payload in events:
            await raw.send(name, **payload)
        # Events of a page run in order: once this one's change arrives, all of the above have run.
        await raw.send(f"{NOTIFY}.set_permission", permission="denied")
        await raw.until(lambda: any(d.get("permission_rx_state_") == "denied" for d in raw.deltas(NOTIFY)))
        await raw.sio.disconnect()
        return raw

    return run_async(send())


@pytest.mark.parametrize("cookie", [None, "4102444800.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.forged"])
def test_console_events_without_a_login_get_nothing_and_change_nothing(
    web: WebApp,
    c: Clients,
    settings: Settings,
    cookie: str | None,
    stored_jobs: list[str],  # noqa: F811
) -> None:
    job_id = store_job(c, "count", time.time() + 7200, JobStatus.FAILED)
    stored_jobs.append(job_id)
    queued = service.submit_job("count", {"n": 5}, c, OWNER).job_id
    keys_before = set(c.redis.scan_iter(match="jobstream:ops:*"))
    raw = send_raw(web, cookie, console_events(job_id, queued))
    seen = json.dumps(raw.updates)
    assert job_id not in seen
    assert queued not in seen
    # What it was sent is the states' defaults: nothing listed, counted, asked or signed in.
    for state in (OPS, OPS_JOBS, OPS_LIVE, OPS_BULK, OPS_LOG):
        for delta in raw.deltas(state):
            shown = {key: value for key, value in delta.items() if key.split("_rx_state_")[0] in REVEALING and value}
            assert not shown, (state, shown)
    assert service.get_job(queued, c).status is JobStatus.QUEUED
    assert c.history.job(job_id).status is JobStatus.FAILED  # type: ignore[union-attr]
    assert set(c.redis.scan_iter(match="jobstream:ops:*")) - keys_before <= set(
        c.redis.scan_iter(match=series.SERIES_PREFIX + "*")
    ), "no session or rerun mark made"
    # The same client with a real login is answered: the test above would see it if it leaked.
    on = replace(settings, ops_password_hash=HASH)
    value = sessions.login(PASSWORD, "192.0.2.77", on, c.redis)
    answered = send_raw(web, value, [(f"{OPS_JOBS}.filter_status", {"value": "all"})])
    assert job_id in json.dumps(answered.deltas(OPS_JOBS))
    service.cancel_job(queued, c)


@pytest.fixture
def console_off_backend(settings: Settings) -> Iterator[str]:
    """The app's backend alone (granian, as `reflex run --env prod` serves it) without OPS_PASSWORD_HASH:
    its URL. It compiles nothing into .web, so the module's app is left alone."""
    port = free_port()
    env = {**app_env(), "BACKEND_PORT": str(port)}
    env.pop("OPS_PASSWORD_HASH", None)
    command = [str(VENV_BIN / "granian"), "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port)]
    log_path = settings.run_dir / "logs" / "web-ops-off.log"
    child = Child("web-ops-off", [*command, "--workers", "1", "--factory", "rxapp.rxapp:app"], log_path, env,
                  die_with_parent=True)  # fmt: skip
    url = f"http://localhost:{port}"
    child.wait_until(lambda: http_ok(f"{url}/ping"), 60, "the console-off backend serving")
    yield url
    child.stop(10)


def test_with_the_console_off_the_page_says_so_and_its_events_answer_nothing(
    console_off_backend: str,
    c: Clients,
    settings: Settings,
    stored_jobs: list[str],  # noqa: F811
) -> None:
    job_id = store_job(c, "count", time.time() + 7200, JobStatus.FAILED)
    stored_jobs.append(job_id)
    # A cookie that would be valid with the console on: off, nothing takes it.
    value = sessions.login(PASSWORD, "192.0.2.78", replace(settings, ops_password_hash=HASH), c.redis)
    backend = cast(WebApp, SimpleNamespace(backend=console_off_backend))
    raw = send_raw(
        backend, value, [(f"{OPS_JOBS}.filter_status", {"value": "all"}), (f"{OPS}.show_tab", {"tab": "workers"})]
    )
    loaded = {key: value for delta in raw.deltas(OPS) for key, value in delta.items()}
    assert (loaded["checked_rx_state_"], loaded["enabled_rx_state_"]) == (True, False)
    assert job_id not in json.dumps(raw.updates)
    for state in (OPS, OPS_JOBS, OPS_LIVE):
        for delta in raw.deltas(state):
            assert not {k: v for k, v in delta.items() if k.split("_rx_state_")[0] in REVEALING and v}, delta
