-- Monthly partitions of transactions and ledger_entries (PostgreSQL, migration 0011).
--
-- Both tables are RANGE-partitioned on created_at_ms (milliseconds since the epoch), one
-- partition per UTC calendar month, named <table>_yYYYYmMM in the schema qwallet_partitions
-- (kept out of the application schema, so the schema check and \dt see only the parents).
-- A DEFAULT partition (<table>_default) catches any row no month covers: money never fails
-- because a month was not created in time. qwallet_ensure_partitions creates the months
-- ahead; it is called by the migration, by qwallet serve at startup and every hour, and by
-- qwallet db partitions. A month whose rows already landed in the default partition is
-- created by moving them out of it first (a short ACCESS EXCLUSIVE lock of the default
-- partition), so running it late repairs what running it on time would have avoided.
--
-- Each new partition takes the storage parameters of its table's default partition (the
-- autovacuum settings of migration 0008, docs/operations.md "Vacuum"): one place holds them.
--
-- The month bounds of a time, as [lower, upper) in milliseconds.
CREATE OR REPLACE FUNCTION qwallet_month_bounds(p_at_ms bigint, OUT lower_ms bigint,
                                                OUT upper_ms bigint, OUT suffix text)
LANGUAGE sql IMMUTABLE
AS $$
    SELECT (extract(epoch FROM m) * 1000)::bigint,
           (extract(epoch FROM m + interval '1 month') * 1000)::bigint,
           to_char(m, '"y"YYYY"m"MM')
      FROM (SELECT date_trunc('month', to_timestamp(p_at_ms / 1000.0) AT TIME ZONE 'UTC') AS m) t
$$;

-- Create the monthly partitions of both tables for every month from the one holding
-- p_from_ms to the one holding p_to_ms (both included) that do not exist yet. Answers how
-- many partitions it created.
CREATE OR REPLACE FUNCTION qwallet_ensure_partitions(p_from_ms bigint, p_to_ms bigint)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    v_at bigint := p_from_ms;
    v_month record;
    v_table text;
    v_name text;
    v_options text;
    v_created integer := 0;
BEGIN
    IF p_to_ms < p_from_ms THEN
        RAISE EXCEPTION 'bad range % .. %', p_from_ms, p_to_ms;
    END IF;
    WHILE v_at <= p_to_ms LOOP
        v_month := qwallet_month_bounds(v_at);
        FOREACH v_table IN ARRAY ARRAY['transactions', 'ledger_entries'] LOOP
            v_name := v_table || '_' || v_month.suffix;
            IF to_regclass(format('qwallet_partitions.%I', v_name)) IS NULL THEN
                SELECT COALESCE(' WITH (' || array_to_string(c.reloptions, ', ') || ')', '')
                  INTO v_options
                  FROM pg_class c
                 WHERE c.oid = format('qwallet_partitions.%I', v_table || '_default')::regclass;
                -- Rows of this month in the default partition must leave it first: attaching
                -- a partition whose range the default still holds is refused.
                EXECUTE format('LOCK TABLE qwallet_partitions.%I IN ACCESS EXCLUSIVE MODE',
                               v_table || '_default');
                EXECUTE format(
                    'CREATE TABLE qwallet_partitions.%I (LIKE %I INCLUDING DEFAULTS'
                    ' INCLUDING CONSTRAINTS)%s', v_name, v_table, v_options);
                EXECUTE format(
                    'WITH moved AS (DELETE FROM qwallet_partitions.%I'
                    ' WHERE created_at_ms >= $1 AND created_at_ms < $2 RETURNING *)'
                    ' INSERT INTO qwallet_partitions.%I SELECT * FROM moved',
                    v_table || '_default', v_name)
                    USING v_month.lower_ms, v_month.upper_ms;
                EXECUTE format(
                    'ALTER TABLE %I ATTACH PARTITION qwallet_partitions.%I'
                    ' FOR VALUES FROM (%s) TO (%s)',
                    v_table, v_name, v_month.lower_ms, v_month.upper_ms);
                v_created := v_created + 1;
            END IF;
        END LOOP;
        v_at := v_month.upper_ms;
    END LOOP;
    RETURN v_created;
END
$$;
