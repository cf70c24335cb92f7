-- service_audit_logs: one row per PhantomBuster job (docs/audit-log.md).
--
-- Idempotent: pb-worker runs this on every start, and it must also work on
-- the table the Rails app already has (which lacks our columns).  Run as
-- one transaction (pb_audit_migrate sends it as one multi-statement query,
-- scripts/migrate.sh uses psql --single-transaction).

-- Several pb-worker processes start together; CREATE TABLE IF NOT EXISTS
-- is not safe against a concurrent CREATE, so serialise the migrators.
SELECT pg_advisory_xact_lock(72530001);

-- ALTER TABLE takes an exclusive lock even when the column exists.  On the
-- Rails app's busy table, queueing behind a long transaction would stall
-- every Rails query behind us: give up instead (pb-worker reports RETRY,
-- SQLSTATE 55P03, and tries again later).
SET LOCAL lock_timeout = '3s';

-- Timestamps are "timestamp without time zone" holding UTC, as Rails
-- creates them; the worker's sessions run with TimeZone=UTC.
CREATE TABLE IF NOT EXISTS service_audit_logs (
    id bigserial PRIMARY KEY,
    job_id varchar,
    service_name varchar,
    agent_id varchar,
    status varchar,
    phantom_container_id varchar,
    webhook_payload jsonb,
    metadata jsonb DEFAULT '{}'::jsonb,
    created_at timestamp(6) NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    updated_at timestamp(6) NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);

-- An existing Rails table: add whatever is missing.
ALTER TABLE service_audit_logs ADD COLUMN IF NOT EXISTS job_id varchar;
ALTER TABLE service_audit_logs ADD COLUMN IF NOT EXISTS service_name varchar;
ALTER TABLE service_audit_logs ADD COLUMN IF NOT EXISTS agent_id varchar;
ALTER TABLE service_audit_logs ADD COLUMN IF NOT EXISTS status varchar;
ALTER TABLE service_audit_logs ADD COLUMN IF NOT EXISTS phantom_container_id varchar;
ALTER TABLE service_audit_logs ADD COLUMN IF NOT EXISTS webhook_payload jsonb;
ALTER TABLE service_audit_logs ADD COLUMN IF NOT EXISTS metadata jsonb DEFAULT '{}'::jsonb;
ALTER TABLE service_audit_logs ADD COLUMN IF NOT EXISTS created_at timestamp(6) NOT NULL DEFAULT (now() AT TIME ZONE 'UTC');
ALTER TABLE service_audit_logs ADD COLUMN IF NOT EXISTS updated_at timestamp(6) NOT NULL DEFAULT (now() AT TIME ZONE 'UTC');

-- The upsert's conflict target.  Rows the Rails app writes itself have a
-- NULL job_id, and NULLs never conflict, so they are left alone.
CREATE UNIQUE INDEX IF NOT EXISTS index_service_audit_logs_on_job_id
    ON service_audit_logs (job_id);

-- Matching webhooks and support queries look rows up by container.
CREATE INDEX IF NOT EXISTS index_service_audit_logs_on_phantom_container_id
    ON service_audit_logs (phantom_container_id);
