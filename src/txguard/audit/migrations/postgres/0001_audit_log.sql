-- The hash-chained decision log (see txguard/audit/chain.py). body holds the canonical bytes the
-- chain hashes (text, not jsonb: jsonb would reorder keys); the other columns are copies for
-- indexing, checked against body by verify.
CREATE TABLE audit_records (
    seq               bigint PRIMARY KEY,
    decision_id       text NOT NULL UNIQUE,
    transaction_id    text NOT NULL UNIQUE,
    decided_at        timestamptz NOT NULL,
    action            text NOT NULL,
    sender_account_id text NOT NULL,
    model_version     text,
    body              text NOT NULL,
    prev_hash         text NOT NULL,
    hash              text NOT NULL
);
CREATE INDEX audit_records_decided_at ON audit_records (decided_at);
CREATE INDEX audit_records_sender ON audit_records (sender_account_id, seq);
CREATE INDEX audit_records_action ON audit_records (action, seq);

-- the last seq and hash, moved in the same transaction as the rows
CREATE TABLE audit_head (
    id   integer PRIMARY KEY CHECK (id = 1),
    seq  bigint NOT NULL,
    hash text NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- append-only against accidents; deliberate tampering (disabling these) is what the chain catches
CREATE FUNCTION audit_records_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_records is append-only';
END
$$;
CREATE TRIGGER audit_records_no_change BEFORE UPDATE OR DELETE ON audit_records
    FOR EACH ROW EXECUTE FUNCTION audit_records_refuse_change();
CREATE TRIGGER audit_records_no_truncate BEFORE TRUNCATE ON audit_records
    FOR EACH STATEMENT EXECUTE FUNCTION audit_records_refuse_change();
