import { mkdtempSync, readdirSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate } from '../src/db/migrate.js';
import { backends, openTestDb } from './helpers/test-db.js';
import { ADMIN_KEY, createAgent, startTestApp, uniquePhone, type TestApp } from './helpers/test-app.js';

/** The wire form of a contact built from its columns, as the pull built it before it was stored. */
const BUILT_WIRE = `json_build_object(
  'id', r.id, 'version', r.version, 'firstName', r.first_name, 'lastName', r.last_name,
  'phonePrimary', r.phone_primary, 'phoneSecondary', r.phone_secondary, 'email', r.email,
  'company', r.company, 'notes', r.notes, 'externalId', r.external_id, 'doNotCall', r.do_not_call,
  'preferredChannel', r.preferred_channel, 'photoFileId', r.photo_file_id,
  'createdByAgent', r.created_by_agent, 'isDeleted', r.is_deleted,
  'createdAt', to_char(r.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
  'updatedAt', to_char(r.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))`;

/** Contacts whose stored wire form differs from the one their columns give. */
const STALE_SQL = `SELECT r.id FROM contacts r WHERE r.tenant_id = $1 AND r.wire::jsonb IS DISTINCT FROM (${BUILT_WIRE})::jsonb`;

const MIGRATIONS = fileURLToPath(new URL('../migrations/', import.meta.url));

describe.each(backends)('the stored wire form of contacts on %s', (backend) => {
  it('is filled in for the contacts that existed before migration 0012', async () => {
    const testDb = await openTestDb(backend, { migrate: false });
    try {
      const before = mkdtempSync(join(tmpdir(), 'fieldsync-migrations-'));
      for (const file of readdirSync(MIGRATIONS).filter((f) => f < '0012')) copyFileSync(join(MIGRATIONS, file), join(before, file));
      await migrate(testDb.db, `${before}/`);
      const { rows } = await testDb.db.query<{ id: string }>("INSERT INTO tenants (slug, name) VALUES ('wire', 'wire') RETURNING id");
      const tenantId = rows[0].id;
      await testDb.db.query(
        `INSERT INTO contacts (tenant_id, version, first_name, last_name, phone_primary, email, notes, do_not_call, created_by_agent, is_deleted)
         VALUES ($1, 1, 'Ada', NULL, '+4915112345678', 'ada@example.com', 'say "hi"\\n', true, 'A1', false),
                ($1, 2, 'Bob', 'Byte', '+4915112345679', NULL, NULL, false, NULL, true)`,
        [tenantId],
      );
      expect(await migrate(testDb.db)).toContain('0012_contacts_wire.sql');
      const stored = await testDb.db.query<{ wire: string }>('SELECT wire FROM contacts WHERE tenant_id = $1 ORDER BY version', [tenantId]);
      expect(stored.rows.map((r) => JSON.parse(r.wire))).toMatchObject([
        { firstName: 'Ada', lastName: null, notes: 'say "hi"\\n', doNotCall: true, createdByAgent: 'A1', isDeleted: false, version: 1 },
        { firstName: 'Bob', lastName: 'Byte', email: null, isDeleted: true, version: 2 },
      ]);
      expect((await testDb.db.query(STALE_SQL, [tenantId])).rows).toEqual([]);
    } finally {
      await testDb.drop();
    }
  });

  describe('after writes through every path', () => {
    let app: TestApp;
    let tenantId: string;
    let agent: { apiKey: string };

    beforeAll(async () => {
      app = await startTestApp(backend);
      agent = await createAgent(app, `WIRE-${backend}`);
      const { rows } = await app.testDb.db.query<{ id: string }>("SELECT id FROM tenants WHERE slug = 'default'");
      tenantId = rows[0].id;
    });
    afterAll(async () => {
      await app?.close();
    });

    it('equals the record as its columns say, and is what the pull, REST and the push answer carry', async () => {
      // Push: creates, an update, a delete.
      const pushed = await app.api('POST', '/api/sync', {
        key: agent.apiKey,
        body: {
          deviceId: 'wire-1',
          changes: [
            { localId: 'w1', entityType: 'contacts', operation: 'create', timestamp: Date.now(), data: { firstName: 'Wire', phonePrimary: uniquePhone(), company: 'Ç & "Co"' } },
            { localId: 'w2', entityType: 'contacts', operation: 'create', timestamp: Date.now(), data: { firstName: 'Gone', phonePrimary: uniquePhone() } },
            { localId: 'w1', entityType: 'contacts', operation: 'update', timestamp: Date.now() + 1, data: { notes: 'line\nbreak', doNotCall: true } },
            { localId: 'w2', entityType: 'contacts', operation: 'delete', timestamp: Date.now() + 1 },
          ],
        },
      });
      expect(pushed.status).toBe(200);
      const [created] = pushed.body.data.acknowledged;
      // REST: a create and a partial edit; bulk; CSV import.
      const rest = await app.api('POST', '/api/contacts', { body: { firstName: 'Rest', phonePrimary: uniquePhone(), email: 'Rest@Example.com' } });
      expect(rest.status).toBe(201);
      expect((await app.api('PATCH', `/api/contacts/${rest.body.data.id}`, { body: { lastName: 'Edited' } })).status).toBe(200);
      expect((await app.api('POST', '/api/contacts/bulk', { body: [{ firstName: 'Bulk', phonePrimary: uniquePhone() }] })).status).toBe(200);
      const csv = `firstName,phonePrimary,notes\nCsv,${uniquePhone()},"quoted, ""cell"""\n`;
      expect((await app.api('POST', '/api/contacts/import', { raw: csv, headers: { 'content-type': 'text/csv' } })).status).toBe(200);

      expect((await app.testDb.db.query(STALE_SQL, [tenantId])).rows).toEqual([]);

      // The pull carries the stored form, REST the same record.
      const pulled = await app.api('GET', '/api/sync/delta?version=0&limit=5000&collections=contacts', { key: ADMIN_KEY });
      expect(pulled.status).toBe(200);
      const byId = new Map<string, Record<string, unknown>>(pulled.body.data.changes.map((c: { id: string; data: Record<string, unknown> }) => [c.id, c.data]));
      const one = await app.api('GET', `/api/contacts/${created.serverId}`);
      expect(byId.get(created.serverId)).toEqual(one.body.data);
      expect(one.body.data).toMatchObject({ firstName: 'Wire', company: 'Ç & "Co"', notes: 'line\nbreak', doNotCall: true, version: created.version + 2 });
      const { rows } = await app.testDb.db.query<{ id: string; wire: string }>('SELECT id, wire FROM contacts WHERE tenant_id = $1', [tenantId]);
      for (const row of rows) expect(byId.get(row.id)).toEqual(JSON.parse(row.wire));
    });
  });
});
