import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from './helpers/test-db.js';
import { startTestApp, type TestApp } from './helpers/test-app.js';

describe.each(backends)('maintenance job on %s', (backend) => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp(backend);
  });
  afterAll(async () => {
    await app?.close();
  });

  it('removes idempotency answers past 24 hours and receipts past 30 days, and keeps fresh ones', async () => {
    const db = app.testDb.db;
    const tenantId = (await db.query<{ id: string }>("SELECT id FROM tenants WHERE slug = 'default'")).rows[0].id;
    await db.query(
      `INSERT INTO idempotency_keys (tenant_id, principal, key, body_hash, response_status, response_body, expires_at)
       VALUES ($1, 'p', 'old', 'h', 200, '{}', now() - interval '1 minute'), ($1, 'p', 'fresh', 'h', 200, '{}', now() + interval '1 hour')`,
      [tenantId],
    );
    await db.query(
      `INSERT INTO push_receipts (tenant_id, device_id, change_key, ack, created_at)
       VALUES ($1, 'd', 'old', '{}', now() - interval '31 days'), ($1, 'd', 'fresh', '{}', now() - interval '29 days')`,
      [tenantId],
    );
    await app.built.services.maintenance.tick();
    const keys = await db.query<{ key: string }>('SELECT key FROM idempotency_keys WHERE tenant_id = $1', [tenantId]);
    const receipts = await db.query<{ change_key: string }>('SELECT change_key FROM push_receipts WHERE tenant_id = $1', [tenantId]);
    expect(keys.rows.map((r) => r.key)).toEqual(['fresh']);
    expect(receipts.rows.map((r) => r.change_key)).toEqual(['fresh']);
  });
});
