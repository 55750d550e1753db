-- Transactions received from other servers, so that a retried PUT /send gets the
-- same answer without the PDUs being processed twice (spec: idempotent by origin and txn id).
CREATE TABLE received_transactions (
    origin TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    response_json TEXT NOT NULL,
    received_ts BIGINT NOT NULL,
    PRIMARY KEY (origin, txn_id)
);
CREATE INDEX received_transactions_ts ON received_transactions (received_ts);
