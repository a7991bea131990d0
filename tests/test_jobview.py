"""What a job card shows, without a browser: its params and result in short, its message, and its
elapsed time when the job has not said how many steps it has."""

from __future__ import annotations

import uuid

from rxapp.jobview import job_view, summary
from tasks.model import JobState, JobStatus


def test_the_card_shows_params_and_result_in_short() -> None:
    assert summary({"n": 1000}) == "n=1000"
    assert summary({"limit": 10_000_000, "segments": 100}) == "limit=10,000,000 · segments=100"
    assert summary({"ratio": 0.5, "loud": False, "mode": "fast", "limit": None}) == "ratio=0.5 · loud=false · mode=fast"
    assert summary({"x": None}) == ""
    long = summary({"text": "word " * 100, "top": 5})
    assert long == 'text="' + ("word " * 6)[:27] + '…" · top=5'
    assert len(summary({f"p{i}": "x" * 20 for i in range(10)})) == 80


def test_a_job_without_a_known_total_shows_its_elapsed_time_and_keeps_its_params() -> None:
    job_id = str(uuid.uuid4())
    queued = job_view(JobState(job_id, 0, 0, JobStatus.QUEUED, 99.0, job_type="silent", params={"seconds": 3.0}))
    assert (queued.title, queued.params_text, queued.step_text, queued.percent_text) == ("Silent", "seconds=3", "", "")
    running = job_view(JobState(job_id, 0, 0, JobStatus.RUNNING, 112.4, 100.0, job_type="silent"), queued)
    assert running.params_text == "seconds=3"  # progress states do not carry the params
    assert (running.indeterminate, running.eta_text, running.rate_text) == (True, "running for 12.4 s", "")
    done = job_view(
        JobState(
            job_id, 0, 0, JobStatus.SUCCEEDED, 113.0, 100.0, job_type="silent", params={"seconds": 3.0}, result="done"
        ),
        running,
    )
    assert (done.indeterminate, done.percent, done.duration_text, done.result_text) == (
        False,
        100.0,
        "took 13.0 s",
        "done",
    )


def test_a_card_shows_the_jobs_message_and_steps_without_a_total() -> None:
    job_id = str(uuid.uuid4())
    state = JobState(job_id, 40, 0, JobStatus.RUNNING, 110.0, 100.0, job_type="tqdm_only", message="Crunching")
    view = job_view(state)
    assert (view.step_text, view.message, view.rate_text) == ("step 40", "Crunching", "4.0 steps/s")
