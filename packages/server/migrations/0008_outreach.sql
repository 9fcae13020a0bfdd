-- Outreach (SPEC §9, seed crm-source-of-truth): projects, their contacts, call sessions (append
-- only), terminal sessions, the tenant's call limits; the HubSpot export's outbox.
-- A project is named by its external id (`project_id`) everywhere; links, calls and terminal
-- sessions reference it by (tenant_id, project_id), so the database itself refuses a dangling one.

CREATE TABLE projects (
  id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id              uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  version                bigint NOT NULL,
  project_id             text NOT NULL,
  name                   text NOT NULL,
  status                 text NOT NULL DEFAULT 'active',
  call_suppressed        boolean NOT NULL DEFAULT false,
  next_call_eligible_at  timestamptz,
  properties             jsonb NOT NULL DEFAULT '{}'::jsonb,
  is_deleted             boolean NOT NULL DEFAULT false,
  created_at             timestamptz NOT NULL DEFAULT now(),
  updated_at             timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX projects_tenant_version ON projects (tenant_id, version);
CREATE UNIQUE INDEX projects_tenant_project ON projects (tenant_id, project_id);

CREATE TABLE project_contacts (
  id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id             uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  version               bigint NOT NULL,
  project_id            text NOT NULL,
  contact_id            uuid NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
  role                  text,
  suppress_for_project  boolean NOT NULL DEFAULT false,
  is_deleted            boolean NOT NULL DEFAULT false,
  created_at            timestamptz NOT NULL DEFAULT now(),
  updated_at            timestamptz NOT NULL DEFAULT now(),
  FOREIGN KEY (tenant_id, project_id) REFERENCES projects (tenant_id, project_id)
);
CREATE UNIQUE INDEX project_contacts_tenant_version ON project_contacts (tenant_id, version);
-- One link per pair; the eligible-calls query walks a project's links in contact order.
CREATE UNIQUE INDEX project_contacts_pair ON project_contacts (tenant_id, project_id, contact_id);
CREATE INDEX project_contacts_contact ON project_contacts (tenant_id, contact_id);

CREATE TABLE call_sessions (
  id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id         uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  version           bigint NOT NULL,
  call_session_id   text,
  project_id        text NOT NULL,
  contact_id        uuid NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
  outcome           text NOT NULL,
  started_at        timestamptz NOT NULL,
  duration_seconds  integer CHECK (duration_seconds >= 0),
  notes             text,
  agent_code        text,
  is_deleted        boolean NOT NULL DEFAULT false,
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now(),
  FOREIGN KEY (tenant_id, project_id) REFERENCES projects (tenant_id, project_id)
);
CREATE UNIQUE INDEX call_sessions_tenant_version ON call_sessions (tenant_id, version);
CREATE UNIQUE INDEX call_sessions_external ON call_sessions (tenant_id, call_session_id) WHERE call_session_id IS NOT NULL;
-- The rolling day and week windows of a pair: an index range scan per pair.
CREATE INDEX call_sessions_pair_started ON call_sessions (tenant_id, project_id, contact_id, started_at);

CREATE TABLE terminal_sessions (
  id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id         uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  version           bigint NOT NULL,
  terminal_id       text,
  scope             text NOT NULL CHECK (scope IN ('project', 'contact', 'global')),
  project_id        text,
  contact_id        uuid REFERENCES contacts(id) ON DELETE CASCADE,
  reason            text NOT NULL,
  expires_at        timestamptz,
  created_by_agent  text,
  is_deleted        boolean NOT NULL DEFAULT false,
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now(),
  FOREIGN KEY (tenant_id, project_id) REFERENCES projects (tenant_id, project_id),
  CHECK (
    (scope = 'project' AND project_id IS NOT NULL) OR
    (scope = 'contact' AND project_id IS NULL AND contact_id IS NOT NULL) OR
    (scope = 'global' AND project_id IS NULL AND contact_id IS NULL)
  )
);
CREATE UNIQUE INDEX terminal_sessions_tenant_version ON terminal_sessions (tenant_id, version);
CREATE UNIQUE INDEX terminal_sessions_external ON terminal_sessions (tenant_id, terminal_id) WHERE terminal_id IS NOT NULL;
CREATE INDEX terminal_sessions_project ON terminal_sessions (tenant_id, project_id, contact_id) WHERE scope = 'project';
CREATE INDEX terminal_sessions_contact ON terminal_sessions (tenant_id, contact_id) WHERE scope = 'contact';
CREATE INDEX terminal_sessions_global ON terminal_sessions (tenant_id) WHERE scope = 'global';

-- The tenant's call limits (a missing row: the defaults 3 / 10 / 24).
CREATE TABLE outreach_settings (
  tenant_id            uuid PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
  call_daily_limit     integer NOT NULL DEFAULT 3,
  call_weekly_limit    integer NOT NULL DEFAULT 10,
  call_cooldown_hours  integer NOT NULL DEFAULT 24,
  updated_at           timestamptz NOT NULL DEFAULT now()
);

-- HubSpot export, per tenant: enablement, the token (AES-256-GCM, never returned), counters.
CREATE TABLE hubspot_integrations (
  tenant_id        uuid PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
  -- NULL: as the server says (HUBSPOT_ACCESS_TOKEN enables every tenant); true/false: the tenant's choice.
  enabled          boolean,
  token_sealed     text,
  backfilled       boolean NOT NULL DEFAULT false,
  exported         bigint NOT NULL DEFAULT 0,
  retries          bigint NOT NULL DEFAULT 0,
  last_error       text,
  last_error_at    timestamptz,
  last_success_at  timestamptz,
  backoff_until    timestamptz,
  updated_at       timestamptz NOT NULL DEFAULT now()
);

-- The outbox: one pending entry per exported object (a later change of the object updates it);
-- an entry is deleted once HubSpot acknowledged it, or kept as a dead letter after its tries.
-- Workers claim due entries with FOR UPDATE SKIP LOCKED and hold them by a lease.
CREATE TABLE hubspot_outbox (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tenant_id        uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  kind             text NOT NULL CHECK (kind IN ('contact', 'deal', 'association', 'note', 'terminal')),
  record_id        uuid NOT NULL,
  record_version   bigint NOT NULL,
  status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'dead')),
  attempts         integer NOT NULL DEFAULT 0,
  next_attempt_at  timestamptz NOT NULL DEFAULT now(),
  lease_until      timestamptz,
  leased_by        text,
  last_error       text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX hubspot_outbox_pending ON hubspot_outbox (tenant_id, kind, record_id) WHERE status = 'pending';
-- A claim picks the oldest due entry, objects (contacts, deals) before what needs their HubSpot
-- ids, then takes that tenant's entries of that kind in queue order.
CREATE INDEX hubspot_outbox_objects ON hubspot_outbox (id) WHERE status = 'pending' AND kind IN ('contact', 'deal');
CREATE INDEX hubspot_outbox_others ON hubspot_outbox (id) WHERE status = 'pending' AND kind NOT IN ('contact', 'deal');
CREATE INDEX hubspot_outbox_queue ON hubspot_outbox (tenant_id, kind, id) WHERE status = 'pending';
CREATE INDEX hubspot_outbox_dead ON hubspot_outbox (tenant_id, id) WHERE status = 'dead';

-- What HubSpot acknowledged, per object: its HubSpot id and the record version it holds, so an
-- acknowledged version is never sent again (and associations and notes find their ends).
CREATE TABLE hubspot_objects (
  tenant_id       uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  kind            text NOT NULL,
  record_id       uuid NOT NULL,
  hubspot_id      text NOT NULL,
  synced_version  bigint NOT NULL,
  synced_at       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, kind, record_id)
);
