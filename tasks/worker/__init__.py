"""The Celery side: the worker's app and configuration, its tasks, and the step loop they run.

Only worker processes import this package; the web app uses the job core in `tasks/` alone.
"""
