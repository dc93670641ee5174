"""The market-data format in Redis Cluster, shared by shards (publishers) and routers (readers).

Pure: key names, message encoding, L2 diffs and the subscriber-side book. No Redis client here;
the I/O lives with whoever publishes (shard/publisher.py) or reads (router/market_data.py).
"""
