-- The wallet functions as they were before migration 0018 (transaction ids drawn by
-- gen_random_uuid(), version 4): re-installed only by that migration's downgrade. Frozen.

-- The wallet use cases in PL/pgSQL: one function per call, so every call is one statement and
-- one round trip. Each function mirrors its counterpart in qwallet/store/engine.py step by step,
-- in the same order of checks (session -> currency -> state machine -> limits -> funds), with the
-- same error codes, descriptions and replay answers.
--
-- Concurrency (READ COMMITTED, any number of server processes):
--   * a money call first locks its player's row (SELECT ... FOR UPDATE), so balance checks and
--     every change to that player's transactions are serialized per player;
--   * transaction ids are claimed with INSERT ... ON CONFLICT DO NOTHING on the primary key
--     (partner_id, mm_transaction_id, kind) of transaction_keys (transactions is partitioned by
--     month and cannot hold that uniqueness): a concurrent request for the same id (another
--     player's, which does not share our lock) waits for the first to commit, then re-reads
--     its row and answers from it (replay, 131, 132 or 130);
--   * a transaction is found through its key (wallet_v1_find): the live row by its partition
--     key, or, once its month was archived, the final answer the key row keeps;
--   * state changes are conditional (... WHERE state = 'pending'), so a confirm racing a
--     rollback cannot both apply;
--   * lock order is always player -> transaction -> session, so calls cannot deadlock.
-- The functions are VOLATILE (the default): every statement inside takes a fresh snapshot, so a
-- re-read after waiting on a lock sees what the other transaction committed.
--
-- Ids. Since migration 0014 the platform's transaction ids are stored as uuid (16 bytes, not
-- 37 of text); every function still takes and answers them as text (OUT qw_transaction_id
-- text, p_transaction_id text), so no signature changed and the callers see the canonical
-- lower-case text form. Inside, ids stay uuid and are cast only where they cross a signature.
--
-- Times are the caller's clock (p_now_ms); the database clock takes no part in any decision.
-- Functions are versioned by name (wallet_v1_*) so that a later version can be installed beside
-- this one while old and new server processes run side by side.
--
-- Every function answers code = 0 on success, else the contract error code; description is
-- NULL when the default text of that code applies.
--
-- One definition per rule (docs/architecture.md). Each error code is written as its number with
-- the name of its qwallet.domain.errors.ErrorCode member in a comment on the same line, and each
-- description is the engine's text; tests/store/test_sql_rules.py parses this file and proves
-- both, so a code or text cannot change on one side only. Values Python owns are parameters, not
-- literals: the session refresh interval (p_touch_interval_ms, domain/sessions.py
-- SESSION_TOUCH_INTERVAL_MS), the UTC day of the daily limit (p_today, domain/sessions.py
-- utc_day) and the maximum balance (p_max_balance_minor, the currency's configuration).
-- Parameters rather than a settings table read inside the functions: a parameter costs nothing
-- (the call stays one round trip with one more bound value), where a table would add a lookup
-- to every call and a second place that must be kept in step with Python.

-- Apply one ledger movement (qwallet.domain.ledger.movement) to a player whose row the caller
-- has locked: two entries summing to zero and the matching change of the cached balances.
-- Returns the player's available balance after the movement.
CREATE OR REPLACE FUNCTION wallet_v1_apply_movement(
    p_transaction_id text,
    p_kind text,
    p_phase text,
    p_player_id text,
    p_partner_id integer,
    p_currency text,
    p_amount_minor bigint,
    p_now_ms bigint,
    p_limit_day integer DEFAULT NULL,
    p_day_withdrawn_minor bigint DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    v_from text;
    v_to text;
    v_available bigint;
BEGIN
    IF p_kind = 'withdrawal' THEN
        v_from := CASE p_phase WHEN 'begin' THEN 'available' ELSE 'held' END;
        v_to := CASE p_phase WHEN 'begin' THEN 'held' WHEN 'confirm' THEN 'partner'
                ELSE 'available' END;
    ELSIF p_kind = 'deposit' THEN
        v_from := CASE p_phase WHEN 'begin' THEN 'partner' ELSE 'pending_in' END;
        v_to := CASE p_phase WHEN 'begin' THEN 'pending_in' WHEN 'confirm' THEN 'available'
                ELSE 'partner' END;
    ELSE
        RAISE EXCEPTION 'unknown transaction kind %', p_kind;
    END IF;
    IF p_phase NOT IN ('begin', 'confirm', 'rollback') OR p_amount_minor <= 0 THEN
        RAISE EXCEPTION 'bad movement % %', p_phase, p_amount_minor;
    END IF;

    UPDATE players
       SET available_minor = available_minor
               + CASE v_to WHEN 'available' THEN p_amount_minor ELSE 0 END
               - CASE v_from WHEN 'available' THEN p_amount_minor ELSE 0 END,
           held_minor = held_minor
               + CASE v_to WHEN 'held' THEN p_amount_minor ELSE 0 END
               - CASE v_from WHEN 'held' THEN p_amount_minor ELSE 0 END,
           pending_in_minor = pending_in_minor
               + CASE v_to WHEN 'pending_in' THEN p_amount_minor ELSE 0 END
               - CASE v_from WHEN 'pending_in' THEN p_amount_minor ELSE 0 END,
           limit_day = COALESCE(p_limit_day, limit_day),
           day_withdrawn_minor = COALESCE(p_day_withdrawn_minor, day_withdrawn_minor)
     WHERE id = p_player_id
    RETURNING available_minor INTO v_available;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'player % not found', p_player_id;
    END IF;

    -- Partner entries carry the partner and no player; player entries the player and no partner.
    INSERT INTO ledger_entries
        (transaction_id, phase, account, player_id, partner_id, currency, amount_minor,
         created_at_ms)
    VALUES
        (p_transaction_id::uuid, p_phase, v_from,
         CASE WHEN v_from = 'partner' THEN NULL ELSE p_player_id END,
         CASE WHEN v_from = 'partner' THEN p_partner_id END,
         p_currency, -p_amount_minor, p_now_ms),
        (p_transaction_id::uuid, p_phase, v_to,
         CASE WHEN v_to = 'partner' THEN NULL ELSE p_player_id END,
         CASE WHEN v_to = 'partner' THEN p_partner_id END,
         p_currency, p_amount_minor, p_now_ms);
    RETURN v_available;
END
$$;

-- The transaction of (partner, kind, mmTransactionId), or a row of NULLs when there is none.
-- The key leads to the live row by its partition key (created_at_ms), so one partition is
-- read; an archived transaction (its month exported and dropped by qwallet db archive) is
-- answered from the final state, amounts and balances its key row keeps.
CREATE OR REPLACE FUNCTION wallet_v1_find(
    p_partner_id integer,
    p_kind text,
    p_mm_transaction_id text
) RETURNS transactions
LANGUAGE plpgsql
AS $$
DECLARE
    v_key record;  -- not %ROWTYPE: migrations before 0011 install this script too
    v_tx transactions%ROWTYPE;
BEGIN
    SELECT * INTO v_key
      FROM transaction_keys
     WHERE partner_id = p_partner_id AND mm_transaction_id = p_mm_transaction_id
       AND kind = p_kind;
    IF NOT FOUND THEN
        RETURN v_tx;
    END IF;
    IF v_key.state IS NULL THEN
        SELECT * INTO v_tx
          FROM transactions
         WHERE qw_transaction_id = v_key.qw_transaction_id
           AND created_at_ms = v_key.created_at_ms;
        RETURN v_tx;
    END IF;
    v_tx.qw_transaction_id := v_key.qw_transaction_id;
    v_tx.partner_id := v_key.partner_id;
    v_tx.kind := v_key.kind;
    v_tx.mm_transaction_id := v_key.mm_transaction_id;
    v_tx.player_id := v_key.player_id;
    v_tx.amount_minor := v_key.amount_minor;
    v_tx.currency := v_key.currency;
    v_tx.state := v_key.state;
    v_tx.begin_balance_minor := v_key.begin_balance_minor;
    v_tx.final_balance_minor := v_key.final_balance_minor;
    v_tx.created_at_ms := v_key.created_at_ms;
    v_tx.updated_at_ms := v_key.created_at_ms;
    RETURN v_tx;
END
$$;

-- verifySession and getBalance: a live session of this partner and an active player.
-- last_seen_at_ms is refreshed only when it is at least p_touch_interval_ms old
-- (SessionRecord.needs_touch in domain/sessions.py).
CREATE OR REPLACE FUNCTION wallet_v1_session(
    p_partner_id integer,
    p_token text,
    p_now_ms bigint,
    p_touch_interval_ms bigint,
    OUT code integer,
    OUT player_id text,
    OUT nickname text,
    OUT currency text,
    OUT language text,
    OUT available_minor bigint
)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v record;
BEGIN
    SELECT s.partner_id AS session_partner_id, s.revoked_at_ms, s.last_seen_at_ms,
           s.idle_timeout_ms, s.expires_at_ms, p.id AS player_id, p.nickname, p.currency,
           p.language, p.status, p.available_minor
      INTO v
      FROM sessions s
      JOIN players p ON p.id = s.player_id
     WHERE s.token = p_token;
    -- A token of another partner is as unknown as a made-up one.
    IF NOT FOUND OR v.session_partner_id <> p_partner_id OR v.revoked_at_ms IS NOT NULL THEN
        code := 110;  -- UNKNOWN_SESSION
        RETURN;
    END IF;
    IF p_now_ms >= v.expires_at_ms OR p_now_ms >= v.last_seen_at_ms + v.idle_timeout_ms THEN
        code := 111;  -- SESSION_EXPIRED
        RETURN;
    END IF;
    IF v.status = 'blocked' THEN
        code := 112;  -- PLAYER_BLOCKED
        RETURN;
    END IF;
    IF p_now_ms - v.last_seen_at_ms >= p_touch_interval_ms THEN
        -- Conditional: a concurrent call that already refreshed it makes this a no-op.
        UPDATE sessions SET last_seen_at_ms = p_now_ms
         WHERE token = p_token AND last_seen_at_ms <= p_now_ms - p_touch_interval_ms;
    END IF;
    code := 0;
    player_id := v.player_id;
    nickname := v.nickname;
    currency := v.currency;
    language := v.language;
    available_minor := v.available_minor;
END
$$;

-- withdraw / deposit: open a pending transaction, or replay the first answer.
CREATE OR REPLACE FUNCTION wallet_v1_begin(
    p_partner_id integer,
    p_kind text,
    p_token text,
    p_mm_transaction_id text,
    p_amount_minor bigint,
    p_currency text,
    p_description text,
    p_max_balance_minor bigint,
    p_now_ms bigint,
    p_today integer,
    p_touch_interval_ms bigint,
    OUT code integer,
    OUT description text,
    OUT mm_transaction_id text,
    OUT qw_transaction_id text,
    OUT currency text,
    OUT balance_minor bigint
)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_player players%ROWTYPE;
    v_session sessions%ROWTYPE;
    v_tx transactions%ROWTYPE;
    v_limit_day integer;
    v_day_withdrawn bigint;
    v_balance bigint;
    v_qw uuid;
BEGIN
    IF p_kind NOT IN ('withdrawal', 'deposit') THEN
        RAISE EXCEPTION 'unknown transaction kind %', p_kind;
    END IF;

    -- Session. The join finds the player and locks its row; the session is then read afresh
    -- (after any wait for the lock) so expiry and revocation are judged on committed data.
    SELECT p.* INTO v_player
      FROM players p
      JOIN sessions s ON s.player_id = p.id
     WHERE s.token = p_token AND s.partner_id = p_partner_id
       FOR UPDATE OF p;
    IF NOT FOUND THEN
        code := 110;  -- UNKNOWN_SESSION
        RETURN;
    END IF;
    SELECT * INTO v_session FROM sessions WHERE token = p_token;
    IF v_session.revoked_at_ms IS NOT NULL THEN
        code := 110;  -- UNKNOWN_SESSION
        RETURN;
    END IF;
    IF p_now_ms >= v_session.expires_at_ms
       OR p_now_ms >= v_session.last_seen_at_ms + v_session.idle_timeout_ms THEN
        code := 111;  -- SESSION_EXPIRED
        RETURN;
    END IF;
    IF v_player.status = 'blocked' THEN
        code := 112;  -- PLAYER_BLOCKED
        RETURN;
    END IF;

    -- Currency.
    IF p_currency <> v_player.currency THEN
        code := 120;  -- CURRENCY_MISMATCH
        RETURN;
    END IF;

    -- At most two rounds: the second only after losing the insert to a concurrent request for
    -- the same id, whose committed row then decides.
    FOR v_round IN 1..3 LOOP
        -- State machine.
        v_tx := wallet_v1_find(p_partner_id, p_kind, p_mm_transaction_id);
        IF v_tx.qw_transaction_id IS NOT NULL THEN
            mm_transaction_id := v_tx.mm_transaction_id;
            qw_transaction_id := v_tx.qw_transaction_id;
            IF v_tx.state = 'rolled_back' THEN
                code := 132;  -- TRANSACTION_ROLLED_BACK
                description := 'Transaction was rolled back before this request arrived.';
                RETURN;
            END IF;
            IF v_tx.player_id <> v_player.id
               OR v_tx.amount_minor IS DISTINCT FROM p_amount_minor
               OR v_tx.currency <> p_currency THEN
                code := 131;  -- TRANSACTION_DATA_MISMATCH
                RETURN;
            END IF;
            code := 0;
            currency := v_tx.currency;
            balance_minor := v_tx.begin_balance_minor;
            EXIT;
        END IF;

        -- Limits, then funds.
        IF p_kind = 'withdrawal' THEN
            v_limit_day := v_player.limit_day;
            v_day_withdrawn := v_player.day_withdrawn_minor;
            IF v_limit_day <> p_today THEN
                v_limit_day := p_today;
                v_day_withdrawn := 0;
            END IF;
            v_day_withdrawn := v_day_withdrawn + p_amount_minor;
            IF v_player.daily_withdraw_limit_minor IS NOT NULL
               AND v_day_withdrawn > v_player.daily_withdraw_limit_minor THEN
                code := 122;  -- LIMIT_EXCEEDED
                description := 'Daily withdrawal limit exceeded.';
                RETURN;
            END IF;
            IF v_player.available_minor < p_amount_minor THEN
                code := 121;  -- INSUFFICIENT_FUNDS
                balance_minor := v_player.available_minor;
                RETURN;
            END IF;
            v_balance := v_player.available_minor - p_amount_minor;
        ELSE
            IF v_player.available_minor + v_player.pending_in_minor + p_amount_minor
               > p_max_balance_minor THEN
                code := 102;  -- INVALID_AMOUNT
                description := 'Deposit would take the wallet above its maximum balance.';
                RETURN;
            END IF;
            v_balance := v_player.available_minor;
        END IF;

        INSERT INTO transaction_keys
            (partner_id, mm_transaction_id, kind, qw_transaction_id, created_at_ms)
        VALUES
            (p_partner_id, p_mm_transaction_id, p_kind, gen_random_uuid(), p_now_ms)
        ON CONFLICT DO NOTHING
        RETURNING qw_transaction_id INTO v_qw;
        IF v_qw IS NULL THEN
            CONTINUE;
        END IF;
        INSERT INTO transactions
            (qw_transaction_id, partner_id, kind, mm_transaction_id, player_id, amount_minor,
             currency, state, description, begin_balance_minor, final_balance_minor,
             created_at_ms, updated_at_ms)
        VALUES
            (v_qw, p_partner_id, p_kind, p_mm_transaction_id, v_player.id,
             p_amount_minor, p_currency, 'pending', p_description, v_balance, NULL,
             p_now_ms, p_now_ms);

        v_balance := wallet_v1_apply_movement(
            v_qw::text, p_kind, 'begin', v_player.id, p_partner_id, p_currency, p_amount_minor,
            p_now_ms,
            CASE WHEN p_kind = 'withdrawal' THEN v_limit_day END,
            CASE WHEN p_kind = 'withdrawal' THEN v_day_withdrawn END);
        code := 0;
        mm_transaction_id := p_mm_transaction_id;
        qw_transaction_id := v_qw;
        currency := p_currency;
        balance_minor := v_balance;
        EXIT;
    END LOOP;

    IF code IS NULL THEN
        code := 134;  -- TRANSACTION_IN_PROGRESS
        RETURN;
    END IF;
    -- Only a successful call refreshes the session, as in the engine, where an error rolls the
    -- refresh back with everything else.
    IF p_now_ms - v_session.last_seen_at_ms >= p_touch_interval_ms THEN
        UPDATE sessions SET last_seen_at_ms = p_now_ms
         WHERE token = p_token AND last_seen_at_ms <= p_now_ms - p_touch_interval_ms;
    END IF;
END
$$;

-- confirmWithdrawal / confirmDeposit. An expired or revoked session is accepted (the partner
-- retries confirm for 48 hours; revocation at sign-out or block must not strand held funds) and
-- so is a blocked player; the token must exist and belong to this partner.
CREATE OR REPLACE FUNCTION wallet_v1_confirm(
    p_partner_id integer,
    p_kind text,
    p_token text,
    p_mm_transaction_id text,
    p_amount_minor bigint,
    p_currency text,
    p_now_ms bigint,
    OUT code integer,
    OUT description text,
    OUT mm_transaction_id text,
    OUT qw_transaction_id text,
    OUT currency text,
    OUT balance_minor bigint
)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_player players%ROWTYPE;
    v_tx transactions%ROWTYPE;
    v_balance bigint;
BEGIN
    IF p_kind NOT IN ('withdrawal', 'deposit') THEN
        RAISE EXCEPTION 'unknown transaction kind %', p_kind;
    END IF;

    SELECT p.* INTO v_player
      FROM players p
      JOIN sessions s ON s.player_id = p.id
     WHERE s.token = p_token AND s.partner_id = p_partner_id
       FOR UPDATE OF p;
    IF NOT FOUND THEN
        code := 110;  -- UNKNOWN_SESSION
        RETURN;
    END IF;

    FOR v_round IN 1..3 LOOP
        v_tx := wallet_v1_find(p_partner_id, p_kind, p_mm_transaction_id);
        -- Another player's transaction is reported as missing: its existence is not revealed.
        IF v_tx.qw_transaction_id IS NULL OR v_tx.player_id <> v_player.id THEN
            code := 130;  -- TRANSACTION_NOT_FOUND
            RETURN;
        END IF;
        mm_transaction_id := v_tx.mm_transaction_id;
        qw_transaction_id := v_tx.qw_transaction_id;
        IF v_tx.state = 'rolled_back' THEN
            code := 132;  -- TRANSACTION_ROLLED_BACK
            RETURN;
        END IF;
        IF v_tx.amount_minor IS DISTINCT FROM p_amount_minor OR v_tx.currency <> p_currency THEN
            code := 131;  -- TRANSACTION_DATA_MISMATCH
            description := 'Confirm must carry the amount and currency of the original.';
            RETURN;
        END IF;
        IF v_tx.state = 'confirmed' THEN
            code := 0;
            currency := v_tx.currency;
            balance_minor := v_tx.final_balance_minor;
            RETURN;
        END IF;

        -- pending -> confirmed. The player lock already serializes this against a rollback;
        -- the state condition keeps it safe even for a writer that skipped the lock.
        v_balance := v_player.available_minor
            + CASE WHEN v_tx.kind = 'deposit' THEN v_tx.amount_minor ELSE 0 END;
        UPDATE transactions
           SET state = 'confirmed', final_balance_minor = v_balance, rollback_reason = NULL,
               updated_at_ms = p_now_ms
         WHERE qw_transaction_id = v_tx.qw_transaction_id
           AND created_at_ms = v_tx.created_at_ms AND state = 'pending';
        IF NOT FOUND THEN
            CONTINUE;
        END IF;
        v_balance := wallet_v1_apply_movement(
            v_tx.qw_transaction_id::text, v_tx.kind, 'confirm', v_player.id, v_tx.partner_id,
            v_tx.currency, v_tx.amount_minor, p_now_ms);
        code := 0;
        currency := v_tx.currency;
        balance_minor := v_balance;
        RETURN;
    END LOOP;
    code := 134;  -- TRANSACTION_IN_PROGRESS
END
$$;

-- rollbackWithdrawal / rollbackDeposit: cancels a pending transaction, or records a rollback that
-- arrived before its original so that the late original is refused with 132. Like confirm, it
-- accepts an expired or revoked session.
CREATE OR REPLACE FUNCTION wallet_v1_rollback(
    p_partner_id integer,
    p_kind text,
    p_token text,
    p_mm_transaction_id text,
    p_reason text,
    p_now_ms bigint,
    OUT code integer,
    OUT description text,
    OUT mm_transaction_id text,
    OUT qw_transaction_id text,
    OUT currency text,
    OUT balance_minor bigint
)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_player players%ROWTYPE;
    v_tx transactions%ROWTYPE;
    v_balance bigint;
    v_qw uuid;
BEGIN
    IF p_kind NOT IN ('withdrawal', 'deposit') THEN
        RAISE EXCEPTION 'unknown transaction kind %', p_kind;
    END IF;

    SELECT p.* INTO v_player
      FROM players p
      JOIN sessions s ON s.player_id = p.id
     WHERE s.token = p_token AND s.partner_id = p_partner_id
       FOR UPDATE OF p;
    IF NOT FOUND THEN
        code := 110;  -- UNKNOWN_SESSION
        RETURN;
    END IF;

    FOR v_round IN 1..3 LOOP
        v_tx := wallet_v1_find(p_partner_id, p_kind, p_mm_transaction_id);
        IF v_tx.qw_transaction_id IS NULL THEN
            -- The original never arrived (or is still on its way): block it.
            INSERT INTO transaction_keys
                (partner_id, mm_transaction_id, kind, qw_transaction_id, created_at_ms)
            VALUES
                (p_partner_id, p_mm_transaction_id, p_kind, gen_random_uuid(), p_now_ms)
            ON CONFLICT DO NOTHING
            RETURNING qw_transaction_id INTO v_qw;
            IF v_qw IS NULL THEN
                -- A concurrent original (or rollback) claimed the id first: decide on its row.
                CONTINUE;
            END IF;
            INSERT INTO transactions
                (qw_transaction_id, partner_id, kind, mm_transaction_id, player_id,
                 amount_minor, currency, state, description, rollback_reason,
                 begin_balance_minor, final_balance_minor, created_at_ms, updated_at_ms)
            VALUES
                (v_qw, p_partner_id, p_kind, p_mm_transaction_id,
                 v_player.id, NULL, v_player.currency, 'rolled_back', NULL, p_reason,
                 NULL, v_player.available_minor, p_now_ms, p_now_ms);
            code := 0;
            mm_transaction_id := p_mm_transaction_id;
            qw_transaction_id := v_qw;
            currency := v_player.currency;
            balance_minor := v_player.available_minor;
            RETURN;
        END IF;
        IF v_tx.player_id <> v_player.id THEN
            code := 130;  -- TRANSACTION_NOT_FOUND
            RETURN;
        END IF;
        mm_transaction_id := v_tx.mm_transaction_id;
        qw_transaction_id := v_tx.qw_transaction_id;
        IF v_tx.state = 'confirmed' THEN
            code := 133;  -- TRANSACTION_CONFIRMED
            RETURN;
        END IF;
        IF v_tx.state = 'rolled_back' THEN
            code := 0;
            currency := v_tx.currency;
            balance_minor := v_tx.final_balance_minor;
            RETURN;
        END IF;

        -- pending -> rolled_back.
        v_balance := v_player.available_minor
            + CASE WHEN v_tx.kind = 'withdrawal' THEN v_tx.amount_minor ELSE 0 END;
        UPDATE transactions
           SET state = 'rolled_back', final_balance_minor = v_balance,
               rollback_reason = p_reason, updated_at_ms = p_now_ms
         WHERE qw_transaction_id = v_tx.qw_transaction_id
           AND created_at_ms = v_tx.created_at_ms AND state = 'pending';
        IF NOT FOUND THEN
            CONTINUE;
        END IF;
        v_balance := wallet_v1_apply_movement(
            v_tx.qw_transaction_id::text, v_tx.kind, 'rollback', v_player.id, v_tx.partner_id,
            v_tx.currency, v_tx.amount_minor, p_now_ms);
        code := 0;
        currency := v_tx.currency;
        balance_minor := v_balance;
        RETURN;
    END LOOP;
    code := 134;  -- TRANSACTION_IN_PROGRESS
END
$$;
