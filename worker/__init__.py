"""GPU workers: the model, the engine that scores with it, and the Celery tasks that feed it.

Importing `worker` never imports torch; only `worker.engine` and what imports it do. Producers (the API,
`rmscore submit`) never import `worker/` at all: the Celery app is `rmscore.broker`, the producer `db.producer`.
"""
