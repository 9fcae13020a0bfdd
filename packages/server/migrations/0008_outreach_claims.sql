-- HubSpot claims go round the tenants (outreach, after 0008_outreach.sql, which is applied
-- wherever main ran and so is never edited): the tenant claimed least recently that has due
-- entries goes first, found by a probe of the due index; the indexes of oldest-first claims go.

-- When a worker last claimed this tenant's entries.
ALTER TABLE hubspot_integrations ADD COLUMN IF NOT EXISTS last_claim_at timestamptz;

DROP INDEX IF EXISTS hubspot_outbox_objects;
DROP INDEX IF EXISTS hubspot_outbox_others;
CREATE INDEX IF NOT EXISTS hubspot_outbox_due ON hubspot_outbox (tenant_id, next_attempt_at) WHERE status = 'pending';
