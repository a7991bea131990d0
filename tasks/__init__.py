"""The Celery side of Jobstream: the job model, its Kafka log, its Redis progress and the tasks."""
