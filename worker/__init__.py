"""GPU workers: the model, the engine that scores with it, and the Celery tasks that feed it.

Importing `worker` or `worker.app` never imports torch, so producers and the API can send tasks
without loading a model; only `worker.engine` and what imports it do.
"""
