"""Jobstream's benchmark suite: `python -m bench [--quick] [--check]`, figures as ratios to a baseline.

The bench runs on its own Redis database, broker port and ports (`settings.ENVIRONMENTS["bench"]`,
chosen by `python -m bench` before anything reads the settings), so the `make run` stack and the
tests' stack are neither touched nor needed; the environment can still override each one.
"""
