"""Jobs: the shared job core (model, Kafka log, Redis progress, owners, service) and, in
`tasks.worker`, the Celery side that runs them."""
