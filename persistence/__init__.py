"""PostgreSQL: schema, the fenced batch writer, epoch claims and recovery loaders.

Works in its own row types (persistence.rows); it imports neither shard nor router.
"""
