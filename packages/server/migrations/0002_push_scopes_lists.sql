-- Batched push (idempotency, client ids), conflict policies and the review queue, scopes
-- (partial replication) and the lists domain: spaces, categories, items.

-- When a change was made, as the conflict policies compare it: a push's (clamped) client
-- timestamp, a REST edit's receipt time.
ALTER TABLE audit_log ADD COLUMN change_ts timestamptz NOT NULL DEFAULT now();

-- localId -> serverId per device, so later batches can refer to records by local id.
CREATE TABLE client_ids (
  tenant_id   uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  device_id   text NOT NULL,
  local_id    text NOT NULL,
  collection  text NOT NULL,
  server_id   uuid NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, device_id, local_id)
);

-- The result of every pushed change, by its identity: a re-sent change gets it back.
CREATE TABLE push_receipts (
  tenant_id   uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  device_id   text NOT NULL,
  change_key  text NOT NULL,
  ack         jsonb NOT NULL,
  conflict    jsonb,
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, device_id, change_key)
);
CREATE INDEX push_receipts_created ON push_receipts (created_at);

-- Idempotency-Key requests: the stored response replays for 24 hours. (A request still in
-- flight is marked in Redis or in memory, not here: a crash must not leave a key stuck.)
CREATE TABLE idempotency_keys (
  tenant_id        uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  principal        text NOT NULL,
  key              text NOT NULL,
  body_hash        text NOT NULL,
  response_status  integer NOT NULL,
  response_body    jsonb NOT NULL,
  created_at       timestamptz NOT NULL DEFAULT now(),
  expires_at       timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, principal, key)
);
CREATE INDEX idempotency_keys_expires ON idempotency_keys (expires_at);

CREATE TABLE conflict_policies (
  tenant_id   uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  collection  text NOT NULL,
  strategy    text NOT NULL CHECK (strategy IN ('server_wins', 'client_wins', 'most_recent_wins', 'field_merge', 'preserve_escalation', 'manual')),
  monotonic   jsonb,
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, collection)
);

-- Every conflict, and the manual review queue (status 'pending').
CREATE TABLE conflicts (
  id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id        uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  collection       text NOT NULL,
  record_id        uuid NOT NULL,
  device_id        text,
  user_id          uuid,
  strategy         text NOT NULL,
  client_change    jsonb NOT NULL,
  server_before    jsonb,
  outcome          text NOT NULL CHECK (outcome IN ('client_applied', 'server_kept', 'merged', 'pending_review')),
  status           text NOT NULL CHECK (status IN ('logged', 'pending', 'resolved')),
  resolution       text CHECK (resolution IN ('server', 'client', 'merged')),
  resolved_data    jsonb,
  resolver_id      uuid,
  resolved_at      timestamptz,
  created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX conflicts_tenant_status ON conflicts (tenant_id, status, created_at);

CREATE TABLE spaces (
  id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id      uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  version        bigint NOT NULL,
  owner_id       uuid NOT NULL REFERENCES users(id),
  name           text NOT NULL,
  icon           text,
  color          text,
  is_visible     boolean NOT NULL DEFAULT true,
  sort_order     double precision NOT NULL DEFAULT 0,
  collaborators  jsonb NOT NULL DEFAULT '[]'::jsonb,
  is_deleted     boolean NOT NULL DEFAULT false,
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX spaces_tenant_version ON spaces (tenant_id, version);

-- Who may see a space (owner, editors, viewers): derived from spaces.owner_id and
-- spaces.collaborators in the same transaction; the pull's scope filter reads it.
CREATE TABLE space_members (
  tenant_id  uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  space_id   uuid NOT NULL REFERENCES spaces(id) ON DELETE CASCADE,
  user_id    uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  role       text NOT NULL CHECK (role IN ('owner', 'editor', 'viewer')),
  PRIMARY KEY (space_id, user_id)
);
CREATE INDEX space_members_user ON space_members (tenant_id, user_id);

CREATE TABLE categories (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id   uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  version     bigint NOT NULL,
  space_id    uuid NOT NULL REFERENCES spaces(id),
  name        text NOT NULL,
  icon        text,
  color       text,
  is_visible  boolean NOT NULL DEFAULT true,
  sort_order  double precision NOT NULL DEFAULT 0,
  is_deleted  boolean NOT NULL DEFAULT false,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX categories_tenant_version ON categories (tenant_id, version);
CREATE INDEX categories_space ON categories (space_id);

CREATE TABLE items (
  id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id      uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  version        bigint NOT NULL,
  space_id       uuid NOT NULL REFERENCES spaces(id),
  category_id    uuid REFERENCES categories(id),
  title          text NOT NULL,
  description    text,
  notes          text,
  type           text NOT NULL DEFAULT 'custom' CHECK (type IN ('custom', 'movie', 'book', 'place', 'contact')),
  ref_id         text,
  is_completed   boolean NOT NULL DEFAULT false,
  completed_at   timestamptz,
  completed_by   jsonb,
  priority       text,
  sort_order     double precision NOT NULL DEFAULT 0,
  tags           jsonb NOT NULL DEFAULT '[]'::jsonb,
  due_date       timestamptz,
  is_deleted     boolean NOT NULL DEFAULT false,
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX items_tenant_version ON items (tenant_id, version);
CREATE INDEX items_space ON items (space_id);
CREATE INDEX items_category ON items (category_id);

-- Access gained or lost by one user, one row per record, each with its own version: the
-- pull turns a grant into an upsert of a record older than the device's checkpoint and a
-- revoke into a delete (docs/sync-protocol.md, "Scopes").
CREATE TABLE scope_events (
  tenant_id   uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  version     bigint NOT NULL,
  user_id     uuid NOT NULL,
  collection  text NOT NULL,
  record_id   uuid NOT NULL,
  kind        text NOT NULL CHECK (kind IN ('grant', 'revoke')),
  PRIMARY KEY (tenant_id, version)
);
CREATE INDEX scope_events_user ON scope_events (tenant_id, user_id, version);
