"""The console's Workers tab (each worker, the queue, the jobs waiting longest) and Charts tab (the
last hour, minute by minute, with Reflex's recharts components)."""

import reflex as rx
from reflex.vars.object import ObjectVar

from rxapp.components.job_card import error_callout
from rxapp.state.ops_live import OpsLiveState, WaitingRow, WorkerRow

STATUS_BARS = (("succeeded", "var(--green-9)"), ("failed", "var(--red-9)"), ("cancelled", "var(--orange-9)"))


def worker_row(worker: ObjectVar[WorkerRow]) -> rx.Component:
    return rx.hstack(
        rx.badge(
            worker.status,
            color_scheme=rx.cond(worker.status == "online", "green", "gray"),
            variant="soft",
            custom_attrs={"data-testid": "ops-worker-status"},
        ),
        rx.text(worker.host, size="2", weight="medium"),
        rx.text("pid ", worker.pid, size="1", color_scheme="gray"),
        rx.text(worker.running, "/", worker.concurrency, " running", size="1"),
        rx.text("seen ", worker.last_seen_text, size="1", color_scheme="gray"),
        spacing="3",
        wrap="wrap",
        align="center",
        padding_y="var(--space-2)",
        border_bottom="1px solid var(--gray-a5)",
        width="100%",
        title=worker.name,
        custom_attrs={"data-testid": "ops-worker", "data-name": worker.name, "data-pid": worker.pid},
    )


def waiting_row(job: ObjectVar[WaitingRow]) -> rx.Component:
    return rx.hstack(
        rx.code(job.job_id.to(str)[:8], variant="ghost", title=job.job_id),
        rx.text(job.type, size="2"),
        rx.text(job.owner, size="1", color_scheme="gray"),
        rx.text("waiting ", job.waiting_text, size="1"),
        spacing="3",
        wrap="wrap",
        custom_attrs={"data-testid": "ops-waiting"},
    )


def ops_workers_view() -> rx.Component:
    return rx.vstack(
        error_callout(OpsLiveState.error, "ops-live-error"),
        rx.heading("Workers", size="3"),
        rx.cond(
            OpsLiveState.workers.length() > 0,
            rx.vstack(rx.foreach(OpsLiveState.workers, worker_row), spacing="0", width="100%"),
            rx.cond(OpsLiveState.workers_loaded, rx.text("No worker seen in the last hour.", size="2")),
        ),
        rx.heading("Queue", size="3"),
        rx.text(
            OpsLiveState.queue_depth,
            " jobs waiting for a worker",
            size="2",
            custom_attrs={"data-testid": "ops-queue-depth"},
        ),
        rx.vstack(rx.foreach(OpsLiveState.waiting, waiting_row), spacing="1", width="100%"),
        rx.text("Read again every 2 s while this tab is open.", size="1", color_scheme="gray"),
        spacing="3",
        width="100%",
        custom_attrs={"data-testid": "ops-workers"},
    )


def chart_card(title: str, chart: rx.Component, testid: str) -> rx.Component:
    return rx.vstack(
        rx.text(title, size="2", weight="medium"),
        chart,
        width="100%",
        spacing="1",
        custom_attrs={"data-testid": testid},
    )


def axes() -> list[rx.Component]:
    return [
        rx.recharts.cartesian_grid(stroke_dasharray="3 3", stroke="var(--gray-a5)"),
        rx.recharts.x_axis(data_key="time", stroke="var(--gray-11)", min_tick_gap=24),
        rx.recharts.y_axis(stroke="var(--gray-11)", width=40, allow_decimals=False),
        rx.recharts.graphing_tooltip(),
    ]


def ops_charts_view() -> rx.Component:
    return rx.vstack(
        error_callout(OpsLiveState.error, "ops-charts-error"),
        rx.text(
            OpsLiveState.finished_last_hour,
            " jobs finished in the last hour (UTC minutes; read again every 2 s)",
            size="2",
            custom_attrs={"data-testid": "ops-finished-total"},
        ),
        chart_card(
            "Jobs finished per minute, by status",
            rx.recharts.bar_chart(
                *axes(),
                *[
                    rx.recharts.bar(data_key=status, stack_id="finished", fill=color, is_animation_active=False)
                    for status, color in STATUS_BARS
                ],
                rx.recharts.legend(),
                data=OpsLiveState.points,
                height=220,
            ),
            "ops-chart-finished",
        ),
        chart_card(
            "Steps per second, all jobs",
            rx.recharts.area_chart(
                *axes(),
                rx.recharts.area(
                    data_key="steps_per_s", stroke="var(--accent-9)", fill="var(--accent-a5)", is_animation_active=False
                ),
                data=OpsLiveState.points,
                height=180,
            ),
            "ops-chart-steps",
        ),
        chart_card(
            "Queue depth (deepest seen in the minute)",
            rx.recharts.line_chart(
                *axes(),
                rx.recharts.line(
                    data_key="queue_depth", stroke="var(--accent-9)", dot=False, is_animation_active=False
                ),
                data=OpsLiveState.points,
                height=180,
            ),
            "ops-chart-queue",
        ),
        spacing="4",
        width="100%",
        custom_attrs={"data-testid": "ops-charts"},
    )
