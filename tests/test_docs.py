"""The README stays true: its first commands and its tables of settings and environments match the code."""

import math
import types
from collections.abc import Callable

import pytest

from settings import PROJECT_ROOT, environments_table, settings_table
from tasks import jobtypes

README = (PROJECT_ROOT / "README.md").read_text()


def test_readme_starts_with_the_run_and_test_commands() -> None:
    first_block = README.split("```sh\n", 1)[1].split("```", 1)[0].splitlines()
    assert [line.split("#")[0].strip() for line in first_block] == ["make run", "make test"]


def readme_table(header: str) -> str:
    """The README's table that starts with `header`, to its last row."""
    lines = README.splitlines()
    assert lines.count(header) == 1, f"the README has {lines.count(header)} tables headed {header!r}"
    start = lines.index(header)
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return "\n".join(lines[start:end])


@pytest.mark.parametrize("generate", [settings_table, environments_table])
def test_readme_tables_are_the_ones_python_m_settings_prints(generate: Callable[[], str]) -> None:
    expected = generate()
    assert readme_table(expected.splitlines()[0]) == expected, "regenerate it with `python -m settings`"


def test_the_readme_job_example_registers_and_runs() -> None:
    """The "Your own job" example is complete: it loads as a module and its function runs."""
    code = next(block for block in README.split("```python\n")[1:] if block.startswith("# myteam/jobs.py"))
    code = code.split("```", 1)[0]
    assert len(code.strip().splitlines()) <= 20
    module = types.ModuleType("readme_example")
    exec(compile(code, "README example", "exec"), module.__dict__)
    job = jobtypes._registry.pop("estimate_pi")
    assert (job.title, job.on_worker_lost) == ("Estimate pi", "resume")

    class Steps:
        checkpoint: dict = {}

        def steps(self, total: int) -> range:
            return range(1, total + 1)

    assert abs(module.estimate_pi(Steps(), batches=3, seed=1) - math.pi) < 0.05
