"""The matching.v1 wire contract's own code, shared by router and shard.

``api.limits`` (the fixed limits the protos state), ``api.validation`` and
``api.request_validation`` (is a message well-formed?), ``api.status`` (errors as gRPC
statuses, rich BadRequest details and the CommandError trailer), ``api.decoding`` (request
bytes that do not parse get INVALID_ARGUMENT), ``api.stream_end`` (a client's cancel is not
a clean half-close), ``api.errors`` (the package's root exception).

Imports matching.v1, grpc and google.rpc only; never router or shard, so both may use it.
Nothing is re-exported here: importing ``api.limits`` must not pull in grpc.
"""
