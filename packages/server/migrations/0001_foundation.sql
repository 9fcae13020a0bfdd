-- Tenancy, identities, versions, contacts, audit, devices.
-- Same file on PGlite and PostgreSQL: plain SQL, no engine-specific features.

CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE tenants (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  slug        text NOT NULL UNIQUE,
  name        text NOT NULL,
  settings    jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per tenant: the last version handed out. Writers lock this row for the length of
-- their transaction, so versions commit in order (see docs/sync-protocol.md).
CREATE TABLE tenant_versions (
  tenant_id        uuid PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
  current_version  bigint NOT NULL DEFAULT 0,
  updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
  id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id      uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  agent_code     text NOT NULL,
  name           text NOT NULL,
  email          text,
  role           text NOT NULL CHECK (role IN ('admin', 'manager', 'agent')),
  password_hash  text,
  is_active      boolean NOT NULL DEFAULT true,
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now(),
  last_seen_at   timestamptz,
  UNIQUE (tenant_id, agent_code)
);
CREATE UNIQUE INDEX users_tenant_email ON users (tenant_id, lower(email)) WHERE email IS NOT NULL;
-- Login by agent code or email without naming the tenant.
CREATE INDEX users_agent_code ON users (agent_code);
CREATE INDEX users_email ON users (lower(email));

CREATE TABLE api_keys (
  id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id     uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  user_id       uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  prefix        text NOT NULL,
  key_hash      text NOT NULL UNIQUE,
  created_at    timestamptz NOT NULL DEFAULT now(),
  last_used_at  timestamptz,
  revoked_at    timestamptz
);
CREATE INDEX api_keys_user ON api_keys (tenant_id, user_id);

CREATE TABLE refresh_tokens (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id   uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  user_id     uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  family_id   uuid NOT NULL,
  token_hash  text NOT NULL UNIQUE,
  expires_at  timestamptz NOT NULL,
  used_at     timestamptz,
  revoked_at  timestamptz,
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

CREATE TABLE contacts (
  id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id          uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  version            bigint NOT NULL,
  first_name         text NOT NULL,
  last_name          text,
  phone_primary      text NOT NULL,
  phone_secondary    text,
  email              text,
  company            text,
  notes              text,
  external_id        text,
  do_not_call        boolean NOT NULL DEFAULT false,
  preferred_channel  text CHECK (preferred_channel IN ('phone', 'sms', 'email', 'whatsapp')),
  photo_file_id      uuid,
  created_by_agent   text,
  is_deleted         boolean NOT NULL DEFAULT false,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now(),
  -- What search matches: names, email, company, and the phones' digits (so any format finds them).
  search_text        text GENERATED ALWAYS AS (
    lower(
      coalesce(first_name, '') || ' ' || coalesce(last_name, '') || ' ' || coalesce(email, '') || ' ' ||
      coalesce(company, '') || ' ' || replace(phone_primary, '+', '') || ' ' ||
      coalesce(replace(phone_secondary, '+', ''), '')
    )
  ) STORED
);
-- The delta pull: one range scan per tenant in version order.
CREATE UNIQUE INDEX contacts_tenant_version ON contacts (tenant_id, version);
-- One live contact per normalised primary phone.
CREATE UNIQUE INDEX contacts_tenant_phone ON contacts (tenant_id, phone_primary) WHERE NOT is_deleted;
CREATE INDEX contacts_tenant_external ON contacts (tenant_id, external_id) WHERE external_id IS NOT NULL;
CREATE INDEX contacts_tenant_email ON contacts (tenant_id, lower(email)) WHERE email IS NOT NULL;
CREATE INDEX contacts_tenant_agent ON contacts (tenant_id, created_by_agent);
CREATE INDEX contacts_tenant_updated ON contacts (tenant_id, updated_at);
CREATE INDEX contacts_search ON contacts USING gin (search_text gin_trgm_ops);

-- Every change of every synced record, written in the writer's transaction (seed: audit_log).
CREATE TABLE audit_log (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tenant_id       uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  collection      text NOT NULL,
  record_id       uuid NOT NULL,
  version         bigint NOT NULL,
  action          text NOT NULL CHECK (action IN ('create', 'update', 'delete')),
  changed_fields  text[] NOT NULL,
  changes         jsonb NOT NULL,
  user_id         uuid,
  agent_code      text,
  device_id       text,
  at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_record ON audit_log (tenant_id, collection, record_id, version);

-- One row per device (seed: sync_log): its checkpoint and what it reports of itself.
CREATE TABLE devices (
  tenant_id          uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  device_id          text NOT NULL,
  user_id            uuid REFERENCES users(id) ON DELETE SET NULL,
  agent_code         text,
  platform           text,
  app_version        text,
  os_version         text,
  network_type       text,
  battery            real,
  last_sync_version  bigint NOT NULL DEFAULT 0,
  last_sync_at       timestamptz,
  last_seen_at       timestamptz,
  sync_status        text NOT NULL DEFAULT 'never',
  changes_count      bigint NOT NULL DEFAULT 0,
  sync_count         bigint NOT NULL DEFAULT 0,
  error_count        bigint NOT NULL DEFAULT 0,
  created_at         timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, device_id)
);

-- The seed's views, kept for the dashboard and ad-hoc SQL. Every one carries tenant_id.
CREATE VIEW active_contacts AS
  SELECT * FROM contacts WHERE NOT is_deleted;

CREATE VIEW device_status AS
  SELECT d.tenant_id, d.device_id, d.agent_code, d.platform, d.app_version, d.network_type,
         d.last_sync_version, d.last_sync_at, d.last_seen_at, d.sync_status, d.changes_count,
         tv.current_version - d.last_sync_version AS versions_behind,
         (d.last_seen_at > now() - interval '2 minutes') AS recently_seen
  FROM devices d JOIN tenant_versions tv ON tv.tenant_id = d.tenant_id;

CREATE VIEW sync_statistics AS
  SELECT d.tenant_id,
         count(*) AS devices,
         count(*) FILTER (WHERE d.last_sync_at > now() - interval '1 hour') AS synced_last_hour,
         coalesce(sum(d.sync_count), 0) AS syncs,
         coalesce(sum(d.error_count), 0) AS errors,
         coalesce(sum(d.changes_count), 0) AS changes,
         max(tv.current_version) AS current_version,
         coalesce(max(tv.current_version - d.last_sync_version), 0) AS max_versions_behind
  FROM devices d JOIN tenant_versions tv ON tv.tenant_id = d.tenant_id
  GROUP BY d.tenant_id;
