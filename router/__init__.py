"""The router: the public OrderGatewayService in front of the shards (DESIGN sections 2, 6).

config (RouterConfig) → server (RouterNode: table, links, gRPC) → gateway (the RPCs) →
routing (Dispatcher: validate, encode once, route, retry once) → buffers (symbols without a
reachable owner) → link (one Execute stream per shard, smart batching) ← links (the link set
following the table, account subscriptions and their fan-out); streams (Trade sessions);
wire (commands framed as bytes, encoded once).

Decisions (to record in docs/decisions):
* A symbol with no assignment that is not in the catalog gets what a shard gives for a
  symbol it does not know: CommandError UNKNOWN_SYMBOL (NOT_FOUND); inside a mass cancel it
  is a MassCancelResult error, as on a shard. A catalog symbol without an assignment yet is
  buffered like a moving one.
* Past the buffer bounds, or while the owner's link is down past them: UNAVAILABLE /
  SYMBOL_MOVING. A command the link could not send (stream broke first, shard left) and a
  shard unreachable in a mass-cancel fan-out: UNAVAILABLE / SHUTTING_DOWN ("not sent").
  Sent and unanswered when the stream broke: UNAVAILABLE / OUTCOME_UNKNOWN.
* Batches carry at most 1,000 commands: shards refuse larger ExecuteRequests (api.limits).
* Cancel-on-disconnect follows gateway.proto: a clean half-close after every answer does not
  cancel; any other end does (the router mass-cancels on every shard, and the shard-side
  AccountSubscription flag covers the router dying).
"""
