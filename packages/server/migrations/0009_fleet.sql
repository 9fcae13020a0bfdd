-- Fleet operations (SPEC §11): sync analytics per tenant and hour, a short per-minute window
-- for alert rules, and the alerts themselves. Instances aggregate in memory and add their
-- counts here periodically (never a row per request); latencies are histograms of fixed
-- log-scale buckets (docs/operations.md), so instances' counts add up and percentiles follow.

CREATE TABLE sync_analytics (
  tenant_id      uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  hour           timestamptz NOT NULL,
  pulls          bigint NOT NULL DEFAULT 0,
  pushes         bigint NOT NULL DEFAULT 0,
  failures       bigint NOT NULL DEFAULT 0,
  changes_pushed bigint NOT NULL DEFAULT 0,
  conflicts      bigint NOT NULL DEFAULT 0,
  items_synced   bigint NOT NULL DEFAULT 0,
  latency_hist   bigint[] NOT NULL,
  PRIMARY KEY (tenant_id, hour)
);
-- Retention deletes by age across tenants.
CREATE INDEX sync_analytics_hour ON sync_analytics (hour);

-- The same counts per minute, kept two hours: what the alert rules read (failures per minute,
-- rates and p95 over the last minutes), summed over every instance.
CREATE TABLE sync_recent (
  tenant_id      uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  minute         timestamptz NOT NULL,
  pulls          bigint NOT NULL DEFAULT 0,
  pushes         bigint NOT NULL DEFAULT 0,
  failures       bigint NOT NULL DEFAULT 0,
  changes_pushed bigint NOT NULL DEFAULT 0,
  conflicts      bigint NOT NULL DEFAULT 0,
  items_synced   bigint NOT NULL DEFAULT 0,
  latency_hist   bigint[] NOT NULL,
  PRIMARY KEY (tenant_id, minute)
);
CREATE INDEX sync_recent_minute ON sync_recent (minute);

CREATE TABLE alerts (
  id           uuid PRIMARY KEY,
  tenant_id    uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  type         text NOT NULL,
  severity     text NOT NULL CHECK (severity IN ('warning', 'critical')),
  message      text NOT NULL,
  device_id    text,
  value        double precision NOT NULL,
  threshold    double precision NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now(),
  resolved_at  timestamptz
);
-- One active alert per tenant, type and device: instances evaluating at once cannot raise twice.
CREATE UNIQUE INDEX alerts_active ON alerts (tenant_id, type, coalesce(device_id, '')) WHERE resolved_at IS NULL;
CREATE INDEX alerts_tenant_created ON alerts (tenant_id, created_at DESC);
