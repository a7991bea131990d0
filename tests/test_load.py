"""The load run, small: `python -m bench.load --quick` passes its own checks and reports every job done."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from settings import PROJECT_ROOT

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
    env = {**os.environ, **LOAD_ENV}
    run = subprocess.run(
        [sys.executable, "-m", "bench.load", "--quick", "--out", str(out)],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert run.returncode == 0, f"exit {run.returncode}\n{run.stdout}\n{run.stderr}"
    assert "ALL CHECKS PASS" in run.stdout
    results = json.loads(out.read_text())
    assert results["ok"]
    assert set(results["checks"].values()) == {"ok"}
    assert results["jobs_submitted"] == results["jobs_succeeded_with_complete_log"] == QUICK_JOBS
    assert results["config"]["n"] == 200
    assert results["peak_rss_mib"]["worker"]["children"] > 0, "the pool processes were sampled"
    assert results["peak_rss_mib"]["api"]["total"] > 0
