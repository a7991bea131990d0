"""The operator's console, server side: the operator's password and sessions, every owner's jobs,
the workers and the queue, per-minute figures and bulk actions, as plain functions that the HTTP
routes (rxapp/ops_api.py) and a console page call. Nothing here is imported at the package's import:
the worker's hot path imports `tasks.ops.series` alone.
"""
