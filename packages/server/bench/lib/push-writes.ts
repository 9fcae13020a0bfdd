/**
 * The push limit's writes, shared by the limit (`load/pg-load.ts`, straight through `pg`) and
 * the deployment-shape reference (`load/http-reference.ts`, the same writes behind a bare
 * `node:http` server): both write the same rows and index entries with the same statements.
 */
import type pg from 'pg';

/**
 * The versions the limits take: a sequence, not the tenant lock. A physical limit is the work
 * itself (the rows and index entries written), not the product's design (SPEC §12), so the
 * limit writers never wait for each other.
 */
export async function versionSequence(client: pg.PoolClient | pg.Pool): Promise<void> {
  // Above every version the bench's tenants reach, so (tenant_id, version) never collides.
  await client.query('CREATE SEQUENCE IF NOT EXISTS bench_limit_versions START 1000000000');
}

/** A new contact of a batch: what the limit writes of it (last name and company are the bench's constants). */
export interface CreateRow {
  firstName: string;
  phone: string;
  localId: string;
}

/** An edit of a batch: the record and its new notes. */
export interface UpdateRow {
  id: string;
  notes: string;
}

/** A row written: its id and the version it got. */
export interface Written {
  id: string;
  version: number;
}

/**
 * What a pushed batch must durably write, as cheaply as PostgreSQL writes it: the new contacts
 * and the edits (multi-row, with every index of the table), one audit row per change, one
 * receipt per change and one local id per create, in one transaction and one commit. Versions
 * come from a sequence: no tenant lock, no version row. Answers the created rows in the order
 * of `creates` and the updated rows in no particular order (an id not in the tenant is not
 * updated: callers that take ids from outside compare the count).
 */
export async function writePushBatch(
  client: pg.PoolClient,
  tenantId: string,
  deviceId: string,
  creates: CreateRow[],
  updates: UpdateRow[],
): Promise<{ created: Written[]; updated: Written[] }> {
  await client.query('BEGIN');
  try {
    const inserted = await client.query<Written>(
      `INSERT INTO contacts (tenant_id, version, first_name, last_name, phone_primary, company, created_by_agent)
       SELECT $1, nextval('bench_limit_versions'), t.f, 'Bench', t.p, 'Bench Ltd', 'limit'
         FROM unnest($2::text[], $3::text[]) AS t(f, p) RETURNING id, version`,
      [tenantId, creates.map((c) => c.firstName), creates.map((c) => c.phone)],
    );
    const updated = await client.query<Written>(
      `UPDATE contacts c SET notes = u.n, version = nextval('bench_limit_versions'), updated_at = now()
         FROM unnest($2::uuid[], $3::text[]) AS u(id, n)
        WHERE c.tenant_id = $1 AND c.id = u.id RETURNING c.id, c.version`,
      [tenantId, updates.map((u) => u.id), updates.map((u) => u.notes)],
    );
    const changes = [
      ...inserted.rows.map((r, i) => ({ id: r.id, v: r.version, a: 'create', l: creates[i].localId, f: ['firstName', 'lastName', 'phonePrimary', 'company'] })),
      ...updated.rows.map((r) => ({ id: r.id, v: r.version, a: 'update', l: null, f: ['notes'] })),
    ];
    await client.query(
      `WITH audit AS (
         INSERT INTO audit_log (tenant_id, collection, record_id, version, action, changed_fields, changes, agent_code, device_id)
         SELECT $1, 'contacts', (e->>'id')::uuid, (e->>'v')::bigint, e->>'a', ARRAY(SELECT jsonb_array_elements_text(e->'f')), e, 'limit', $2
           FROM jsonb_array_elements($3::jsonb) e),
       ids AS (
         INSERT INTO client_ids (tenant_id, device_id, local_id, collection, server_id)
         SELECT $1, $2, e->>'l', 'contacts', (e->>'id')::uuid FROM jsonb_array_elements($3::jsonb) e WHERE e->>'l' IS NOT NULL)
       INSERT INTO push_receipts (tenant_id, device_id, change_key, ack)
       SELECT $1, $2, gen_random_uuid()::text, e FROM jsonb_array_elements($3::jsonb) e`,
      [tenantId, deviceId, JSON.stringify(changes)],
    );
    await client.query('COMMIT');
    return { created: inserted.rows, updated: updated.rows };
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  }
}
