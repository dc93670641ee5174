"""The router: the public OrderGatewayService in front of the shards (DESIGN sections 2, 6).

config (RouterConfig) → server (RouterNode: table, links, gRPC) → gateway (the RPCs) →
routing (Dispatcher: validate, encode once, route, retry once) → buffers (symbols without a
reachable owner) → link (one Execute stream per shard, smart batching) ← links (the link set
following the table, account subscriptions and their fan-out); streams (Trade sessions);
wire (commands framed as bytes, encoded once).

What callers see when a command cannot be delivered, and why batches stop at 1,000:
docs/decisions/0010-router-errors-and-batching.md.
"""
