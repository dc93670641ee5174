-- A retry answered from Postgres returns the placement's original report (orders.proto,
-- PlaceOrder.client_order_id), so what only the report said is stored too: each maker's
-- remaining quantity after a fill, and the orders a command expired (makers removed by
-- self-trade prevention, or a mass cancel's cancelled orders), in the report's order.
-- NULL in rows written before this migration: unknown there.
ALTER TABLE fills ADD COLUMN maker_leaves_qty bigint;
ALTER TABLE journal ADD COLUMN expired_order_ids bigint[];
