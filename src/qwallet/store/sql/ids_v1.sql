-- The platform's transaction ids as time-ordered UUIDs (RFC 9562 version 7), since migration
-- 0018; the wallet functions (wallet_v1.sql) call it wherever they create a transaction.
--
-- PostgreSQL 15 has no uuidv7() (it arrives in 18), hence this function. Layout: the first 48
-- bits are p_now_ms (the caller's clock, like every time in the wallet functions; the database
-- clock takes no part), then version 7, then the random bits of gen_random_uuid(), whose
-- variant bits (10) are already those of RFC 9562. New ids therefore land at the right edge of
-- the indexes on them (transactions' primary key, transaction_keys, ix_ledger_entries_transaction)
-- instead of on a random page, which on a loaded database costs a read and a full-page image in
-- the WAL per insert (docs/benchmarks.md).
--
-- Uniqueness comes from the 74 random bits left (122 of gen_random_uuid() less the 48 of the
-- clock), not from the clock: ids of one millisecond are not ordered among themselves and that
-- is not needed. qwallet/domain/ids.py (new_transaction_id) builds the same layout in Python for
-- the SQLite engine and the payments; tests/store/test_uuid_v7.py holds both to it.
--
-- SQL, not PL/pgSQL, and one expression without FROM: the planner inlines it into the caller's
-- INSERT (a SQL function it cannot inline is planned again at every call). gen_random_uuid()
-- appears once, so inlining cannot draw it twice. VOLATILE (the default): every call must draw
-- new random bits.

CREATE OR REPLACE FUNCTION qwallet_uuid_v7(p_now_ms bigint)
RETURNS uuid
LANGUAGE sql
PARALLEL SAFE
AS $$
    -- Bytes 0-5 <- the low 48 bits of p_now_ms, big-endian; then, in the 32 hex digits, the
    -- 13th (the high nibble of byte 6, the version) 4 -> 7.
    SELECT overlay(
               encode(overlay(uuid_send(gen_random_uuid())
                              PLACING substring(int8send(p_now_ms) FROM 3) FROM 1 FOR 6),
                      'hex')
               PLACING '7' FROM 13 FOR 1)::uuid
$$;
