-- A client order id belongs, forever, to the symbol of the first placement that carried it.
-- Shards claim a batch's new ids here before matching it, so two shards can never both
-- place one id: the unique index on orders alone finds that out only at COMMIT, by failing
-- a batch whose effects on the books must then be reloaded (decision 0016).
CREATE TABLE client_order_claims (
    account          text NOT NULL,
    client_order_id  text NOT NULL,
    symbol           text NOT NULL,
    PRIMARY KEY (account, client_order_id)
);
INSERT INTO client_order_claims (account, client_order_id, symbol)
    SELECT account, client_order_id, symbol FROM orders WHERE client_order_id IS NOT NULL;
