"""The job store: SQLAlchemy models, migrations and the queries every role shares.

The database is the source of truth for jobs, their items, chunks of work and results; Redis only
carries messages that point at it. Nothing here imports torch or FastAPI.
"""
