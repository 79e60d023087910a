-- The hash-chained decision log (see txguard/audit/chain.py). body holds the canonical bytes the
-- chain hashes; the other columns are copies for indexing, checked against body by verify.
CREATE TABLE audit_records (
    seq               INTEGER PRIMARY KEY,
    decision_id       TEXT NOT NULL UNIQUE,
    transaction_id    TEXT NOT NULL UNIQUE,
    decided_at        TEXT NOT NULL,
    action            TEXT NOT NULL,
    sender_account_id TEXT NOT NULL,
    model_version     TEXT,
    body              TEXT NOT NULL,
    prev_hash         TEXT NOT NULL,
    hash              TEXT NOT NULL
);
CREATE INDEX audit_records_decided_at ON audit_records (decided_at);
CREATE INDEX audit_records_sender ON audit_records (sender_account_id, seq);
CREATE INDEX audit_records_action ON audit_records (action, seq);

-- the last seq and hash, moved in the same transaction as the rows: removing the newest records
-- leaves the head pointing past the end of the chain
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- append-only against accidents; deliberate tampering (dropping these) is what the chain catches
CREATE TRIGGER audit_records_no_update BEFORE UPDATE ON audit_records
BEGIN
    SELECT RAISE(ABORT, 'audit_records is append-only');
END;
CREATE TRIGGER audit_records_no_delete BEFORE DELETE ON audit_records
BEGIN
    SELECT RAISE(ABORT, 'audit_records is append-only');
END;
