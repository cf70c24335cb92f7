-- service_audit_logs: one row per PhantomBuster job (docs/audit-log.md).
--
-- The SQLite twin of postgresql/001_service_audit_logs.sql.  Declared
-- types follow what Rails' sqlite3 adapter creates (json, datetime(6)).
--
-- SQLite has no ADD COLUMN IF NOT EXISTS: pb_audit_migrate and
-- scripts/migrate.sh skip any "ALTER TABLE t ADD COLUMN c" whose column
-- already exists (pragma table_info).  Keep each statement ending with ";"
-- at the end of a line and no ";" inside statements: migrate.sh splits
-- on that.  SQLite's ADD COLUMN takes no UNIQUE and no non-constant
-- default, hence the separate index and the nullable timestamps there
-- (pb-worker always writes both timestamps itself).

CREATE TABLE IF NOT EXISTS service_audit_logs (
    id integer PRIMARY KEY AUTOINCREMENT NOT NULL,
    job_id varchar,
    service_name varchar,
    agent_id varchar,
    status varchar,
    phantom_container_id varchar,
    webhook_payload json,
    metadata json DEFAULT '{}',
    created_at datetime(6) NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    updated_at datetime(6) NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);

ALTER TABLE service_audit_logs ADD COLUMN job_id varchar;
ALTER TABLE service_audit_logs ADD COLUMN service_name varchar;
ALTER TABLE service_audit_logs ADD COLUMN agent_id varchar;
ALTER TABLE service_audit_logs ADD COLUMN status varchar;
ALTER TABLE service_audit_logs ADD COLUMN phantom_container_id varchar;
ALTER TABLE service_audit_logs ADD COLUMN webhook_payload json;
ALTER TABLE service_audit_logs ADD COLUMN metadata json DEFAULT '{}';
ALTER TABLE service_audit_logs ADD COLUMN created_at datetime(6);
ALTER TABLE service_audit_logs ADD COLUMN updated_at datetime(6);

-- NULL job_ids (rows written by the Rails app itself) never conflict.
CREATE UNIQUE INDEX IF NOT EXISTS index_service_audit_logs_on_job_id
    ON service_audit_logs (job_id);

CREATE INDEX IF NOT EXISTS index_service_audit_logs_on_phantom_container_id
    ON service_audit_logs (phantom_container_id);
