-- Enum columns are integer, not smallint: proto enums are int32 and unknown values reach
-- the engine (which rejects them as data), so the journal must be able to record them.
-- Reference data of tradable symbols. symbol_id is part of every order id.
CREATE TABLE symbols (
    symbol        text PRIMARY KEY,
    symbol_id     integer NOT NULL UNIQUE CHECK (symbol_id > 0 AND symbol_id < 8388608),
    tick_size     bigint NOT NULL CHECK (tick_size > 0),
    lot_size      bigint NOT NULL CHECK (lot_size > 0),
    min_quantity  bigint NOT NULL CHECK (min_quantity > 0),
    max_quantity  bigint NOT NULL CHECK (max_quantity >= min_quantity),
    status        smallint NOT NULL DEFAULT 1,          -- 1 trading, 2 halted
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- The fence (DESIGN section 4): every batch transaction checks its epoch here.
CREATE TABLE symbol_owner (
    symbol      text PRIMARY KEY REFERENCES symbols (symbol),
    epoch       bigint NOT NULL,
    shard_id    text NOT NULL,
    claimed_at  timestamptz NOT NULL DEFAULT now()
);

-- Current state of every accepted order; resting ones have leaves_qty > 0.
CREATE TABLE orders (
    order_id         bigint PRIMARY KEY,
    symbol           text NOT NULL,
    account          text NOT NULL,
    client_order_id  text,                               -- NULL when the client gave none
    side             integer NOT NULL,
    order_type       integer NOT NULL,
    time_in_force    integer NOT NULL,
    post_only        boolean NOT NULL,
    stp              integer NOT NULL,
    price            bigint NOT NULL,
    quantity         bigint NOT NULL,                    -- total: cum_qty + leaves_qty while open
    cum_qty          bigint NOT NULL,
    leaves_qty       bigint NOT NULL,
    status           smallint NOT NULL,
    priority         bigint NOT NULL,                    -- seq that last queued it; FIFO on recovery
    created_seq      bigint NOT NULL,
    updated_seq      bigint NOT NULL
);
-- Idempotency: a client order id is unique per account, forever.
CREATE UNIQUE INDEX orders_account_client_order_id
    ON orders (account, client_order_id) WHERE client_order_id IS NOT NULL;
-- Recovery reads a symbol's resting orders in priority order.
CREATE INDEX orders_resting ON orders (symbol, priority) WHERE leaves_qty > 0;

CREATE TABLE fills (
    symbol          text NOT NULL,
    seq             bigint NOT NULL,
    match_index     integer NOT NULL,
    maker_order_id  bigint NOT NULL,
    taker_order_id  bigint NOT NULL,
    maker_account   text NOT NULL,
    taker_account   text NOT NULL,
    price           bigint NOT NULL,
    quantity        bigint NOT NULL,
    PRIMARY KEY (symbol, seq, match_index)
);

-- Every command applied to a symbol, in sequence, with its result: enough to replay the
-- symbol deterministically and for downstream consumers to resume by (symbol, seq).
CREATE TABLE journal (
    symbol           text NOT NULL,
    seq              bigint NOT NULL,
    kind             smallint NOT NULL,     -- 1 place, 2 cancel, 3 amend, 4 mass cancel, 5 set status
    account          text NOT NULL,
    client_order_id  text NOT NULL,
    order_id         bigint NOT NULL,       -- place: assigned id (0 if rejected); else the command's
    side             integer NOT NULL,      -- mass cancel: 0 = both sides
    order_type       integer NOT NULL,
    time_in_force    integer NOT NULL,
    post_only        boolean NOT NULL,
    stp              integer NOT NULL,
    price            bigint NOT NULL,       -- amend: new price (0 = unchanged)
    quantity         bigint NOT NULL,       -- amend: new total quantity (0 = unchanged)
    symbol_status    integer NOT NULL,      -- set status: the new status
    status           smallint NOT NULL,     -- result
    reject_code      smallint NOT NULL,
    cum_qty          bigint NOT NULL,
    leaves_qty       bigint NOT NULL,
    epoch            bigint NOT NULL,       -- the writer's epoch: checkers find stale commits
    committed_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, seq)
);
