"""The job history store: every job's records, read from its Kafka log into a SQL database.

Kafka stays the record of truth and Redis the hot path for running jobs; the store answers what
neither can cheaply: which jobs, whose, which failed, and any page of a job's log, without opening
Kafka topic by topic. `python -m tasks.history` runs the consumer that fills it, rebuilds it from
Kafka alone, and prints its lag.
"""
