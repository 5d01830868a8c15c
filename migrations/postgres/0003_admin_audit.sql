-- Changes made through the admin API that are not rollout transitions (traffic edits, key
-- management), with the key id or token subject that made them. Written in the same
-- transaction as the change it describes.
CREATE TABLE admin_audit (
    id BIGSERIAL PRIMARY KEY,
    deployment TEXT,
    action TEXT NOT NULL,
    actor TEXT NOT NULL,
    detail JSONB NOT NULL,
    config_version BIGINT,
    at TIMESTAMPTZ NOT NULL
);
CREATE INDEX admin_audit_by_deployment ON admin_audit (deployment, id);
