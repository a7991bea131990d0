"""Jobstream's benchmark suite: `python -m bench [--quick] [--check]`, figures as ratios to a baseline.

The bench runs on its own Redis database and broker port, so the `make run` stack and the tests'
stack are neither touched nor needed. The defaults are set here, when the package is imported and
so before any submodule can load the settings; the environment can still override each one.
"""

from __future__ import annotations

import os

BENCH_ENV = {
    "REDIS_URL": "redis://127.0.0.1:6379/13",
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:19095",
    "RUN_DIR": ".run/bench",
    "BACKEND_PORT": "8600",  # the Reflex app of the end-to-end benchmark (page, WebSocket, API)
    "STEP_DELAY_MS": "0",
}
for _name, _value in BENCH_ENV.items():
    os.environ.setdefault(_name, _value)
