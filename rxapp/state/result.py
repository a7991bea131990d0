"""The result of one of this browser's jobs, in full: a table when it is a list of flat records,
formatted JSON otherwise, and a download of it as a JSON file. Read only when its dialog opens: the
cards carry a one-line summary of it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import reflex as rx

from rxapp.jobview import type_title
from rxapp.session import page_owner
from rxapp.state.history import on_page
from tasks import service
from tasks.clients import clients
from tasks.model import JobNotFound, JobStatus, ServiceUnavailable

# Rows the table shows at most: a result is at most RESULT_MAX_BYTES, but a page need not draw it all.
ROWS_SHOWN = 500
SCALARS = (str, int, float, bool, type(None))


def is_flat_records(value: Any) -> bool:
    """A non-empty list of dicts whose values are all scalars (text, numbers, booleans, null)."""
    return (
        isinstance(value, list)
        and len(value) > 0
        and all(isinstance(row, dict) and all(isinstance(item, SCALARS) for item in row.values()) for row in value)
    )


def cell_text(value: Any) -> str:
    """A text as it is; a number, a boolean or null as JSON writes it."""
    return value if isinstance(value, str) else json.dumps(value)


def records_table(records: list[dict[str, Any]], limit: int = ROWS_SHOWN) -> tuple[list[str], list[list[str]]]:
    """The columns (every key, in the order first seen) and the first `limit` rows as texts; a
    record without a column has an empty cell there."""
    columns = list(dict.fromkeys(name for record in records for name in record))
    rows = [[cell_text(record[name]) if name in record else "" for name in columns] for record in records[:limit]]
    return columns, rows


def rows_note(count: int, limit: int = ROWS_SHOWN) -> str:
    if count > limit:
        return f"first {limit:,} of {count:,} rows"
    return "1 row" if count == 1 else f"{count:,} rows"


class ResultState(rx.State):
    """The result dialog: which job, and its result as a table or as JSON text."""

    job_id: str = ""
    title: str = ""
    columns: list[str] = []
    rows: list[list[str]] = []
    rows_note: str = ""
    json_text: str = ""
    error: str = ""
    # What the download saves: the result as JSON, kept on the server while the dialog is open.
    _download: str = ""

    @rx.event
    async def open(self, job_id: str):
        """Show the result of `job_id`, if it is one of this browser's jobs."""
        owner = page_owner(self)
        if owner is None or not await on_page(self, job_id):
            return
        self._clear()
        self.job_id = job_id
        try:
            state = await asyncio.to_thread(service.get_job, job_id, clients(), owner)
        except JobNotFound:
            self.error = "This job's result is gone: it was deleted after the retention period."
            return
        except ServiceUnavailable as exc:
            self.error = str(exc)
            return
        self.title = type_title(state.job_type)
        if state.status is not JobStatus.SUCCEEDED or state.result is None:
            self.error = "This job has no result."
            return
        result = state.result
        self._download = json.dumps(result, indent=2, ensure_ascii=False) + "\n"
        if is_flat_records(result):
            self.columns, self.rows = records_table(result)
            self.rows_note = rows_note(len(result))
        else:
            self.json_text = self._download

    @rx.event
    def download(self):
        """Save the result shown as `<job_id>.json`."""
        if not self.job_id or not self._download:
            return None
        return rx.download(data=self._download, filename=f"{self.job_id}.json", mime_type="application/json")

    @rx.event
    def set_open(self, is_open: bool):
        """The dialog opened or closed itself (its close button, Escape, a click outside)."""
        if not is_open:
            self._clear()

    def _clear(self) -> None:
        self.job_id, self.title, self.rows_note, self.json_text, self.error = "", "", "", "", ""
        self.columns, self.rows, self._download = [], [], ""
