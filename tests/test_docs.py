"""The README stays true: its first commands and its settings table match the code."""

from settings import PROJECT_ROOT, SETTINGS

README = (PROJECT_ROOT / "README.md").read_text()


def test_readme_starts_with_the_run_and_test_commands() -> None:
    first_block = README.split("```sh\n", 1)[1].split("```", 1)[0].splitlines()
    assert [line.split("#")[0].strip() for line in first_block] == ["make run", "make test"]


def test_readme_lists_every_setting_with_its_default() -> None:
    rows = {line.split("|")[1].strip().strip("`"): line for line in README.splitlines() if line.startswith("| `")}
    for name, spec in SETTINGS.items():
        assert name in rows, f"{name} is missing from the README's settings table"
        assert f"`{spec.default}`" in rows[name], f"{name}'s default in the README is not {spec.default!r}"
