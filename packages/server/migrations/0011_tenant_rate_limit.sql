-- A tenant's own request budget (SPEC §11: "a tenant setting may lower it"), beside its call
-- limits: outreach_settings is the tenant's settings row (GET/PATCH /api/settings).
-- NULL: the server's RATE_LIMIT_PER_MINUTE.
ALTER TABLE outreach_settings ADD COLUMN rate_limit_per_minute integer CHECK (rate_limit_per_minute BETWEEN 1 AND 1000000);
