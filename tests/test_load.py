"""The load run, small: `python -m bench.load --quick` passes its own checks and reports every job done."""

from __future__ import annotations

import json
from pathlib import Path

from settings import ENVIRONMENTS
from tests.conftest import run_module

QUICK_JOBS = 40
# The load run's own Redis database and broker port, never the tests' (it empties its database), given
# explicitly: this session's environment holds the tests' values, and the load run fills in only what
# is unset. A run folder of its own, apart from a `python -m bench.load` of a person.
LOAD_ENV = {**ENVIRONMENTS["load"], "RUN_DIR": ".run/load-test"}


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
