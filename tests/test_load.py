"""The load run, small: `python -m bench.load --quick` passes its own checks and reports every job done."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_module

QUICK_JOBS = 40
# The load run's own Redis database, broker port and run folder: never the tests' (it empties its
# database), whatever this session's environment says.
LOAD_ENV = {
    "REDIS_URL": "redis://127.0.0.1:6379/9",
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:19097",
    "RUN_DIR": ".run/load-test",
}


def test_the_quick_load_run_completes_every_job(tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    run = run_module(["bench.load", "--quick", "--out", str(out)], LOAD_ENV, timeout_s=240)
    assert run.returncode == 0, f"exit {run.returncode}\n{run.stdout}\n{run.stderr}"
    assert "ALL CHECKS PASS" in run.stdout
    results = json.loads(out.read_text())
    assert results["ok"]
    assert set(results["checks"].values()) == {"ok"}
    assert results["jobs_submitted"] == results["jobs_succeeded_with_complete_log"] == QUICK_JOBS
    assert results["config"]["n"] == 200
    assert results["peak_rss_mib"]["worker"]["children"] > 0, "the pool processes were sampled"
    assert results["peak_rss_mib"]["api"]["total"] > 0
