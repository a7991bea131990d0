"""`python -m tasks.history run | consume | rebuild | lag | migrate`: the history store's command.

- run: the history consumer, restarted when it dies (what `make run` and compose start).
- consume: one history consumer, not restarted.
- rebuild: empty the store and read every job log into it again, from Kafka alone.
- lag: how far the store is behind the logs, as its consumers last said (JSON).
- migrate: create or upgrade the store's tables.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict

from settings import Settings, SettingsError, get_settings
from tasks.history.consumer import HistoryConsumer, rebuild
from tasks.history.store import HistoryStore, StoreError

log = logging.getLogger("tasks.history")

# A consumer that ran at least this long before it died is restarted at once; one that dies sooner
# waits longer each time, up to RESTART_MAX_S.
RESTART_MAX_S = 30.0
HEALTHY_S = 60.0


def consume(settings: Settings) -> int:
    """One consumer until SIGTERM or SIGINT, which finish the batch in hand and leave the group."""
    store = HistoryStore(settings.history_database_url)
    store.migrate()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    consumer = HistoryConsumer(settings, store)
    log.info("history consumer %s: job logs into %s", consumer.member, store.engine.url.render_as_string())
    consumer.run(stop)
    return 0


def supervise() -> int:
    """Run `consume` in a child and start it again whenever it dies; its committed offsets make the
    new one go on where the store ends. SIGTERM or SIGINT stop the child, then this."""
    stopping = threading.Event()
    child: subprocess.Popen[bytes] | None = None

    def stop(signum: int, _frame: object) -> None:
        stopping.set()
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop)
    delay = 1.0
    while not stopping.is_set():
        began = time.monotonic()
        child = subprocess.Popen([sys.executable, "-m", "tasks.history", "consume"])
        code = child.wait()
        if stopping.is_set():
            return 0
        delay = 1.0 if time.monotonic() - began > HEALTHY_S else min(delay * 2, RESTART_MAX_S)
        log.warning("the history consumer ended with code %s; starting it again in %.0f s", code, delay)
        stopping.wait(delay)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tasks.history", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["run", "consume", "rebuild", "lag", "migrate"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = get_settings()
        if args.command == "run":
            return supervise()
        if args.command == "consume":
            return consume(settings)
        store = HistoryStore(settings.history_database_url)
        store.migrate()
        if args.command == "rebuild":
            print(f"stored {rebuild(settings, store):,} records")
        elif args.command == "lag":
            print(json.dumps(asdict(store.lag())))
        return 0
    except (SettingsError, StoreError, TimeoutError) as exc:
        print(f"jobstream history: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
