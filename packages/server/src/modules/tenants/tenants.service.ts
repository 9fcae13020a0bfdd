import type { Tenant, TenantCreate, User } from '@fieldsync/protocol/auth';
import { pgErrorCode, PgCodes, type Db, type Queryable } from '../../db/db.js';
import { AppError } from '../../errors.js';
import { toUser } from '../auth/auth.service.js';
import { insertUser } from '../agents/agents.repository.js';
import { issueApiKey } from '../agents/agents.service.js';
import { hashPassword } from '../auth/credentials.js';

export interface TenantsService {
  /** A new tenant with its own admin (agent code `admin`), whose key is returned once. */
  create(input: TenantCreate, opts?: { adminKey?: string }): Promise<{ tenant: Tenant; admin: User; apiKey: string }>;
  /**
   * On an empty database: tenant `default` with admin `admin`, whose key is `adminKey` (else a
   * generated one) and whose password is `opts.adminPassword` (else none). Returns the admin
   * key when it created one, undefined when tenants already existed.
   */
  bootstrap(adminKey?: string, opts?: { adminPassword?: string }): Promise<{ apiKey: string; generated: boolean } | undefined>;
  findBySlug(slug: string): Promise<Tenant | undefined>;
}

interface TenantRow {
  id: string;
  slug: string;
  name: string;
  created_at: Date;
}
const toTenant = (r: TenantRow): Tenant => ({ id: r.id, slug: r.slug, name: r.name, createdAt: r.created_at.toISOString() });

async function insertTenant(tx: Queryable, input: TenantCreate): Promise<TenantRow> {
  const { rows } = await tx.query<TenantRow>(
    'INSERT INTO tenants (slug, name) VALUES ($1, $2) RETURNING id, slug, name, created_at',
    [input.slug, input.name],
  );
  await tx.query('INSERT INTO tenant_versions (tenant_id) VALUES ($1)', [rows[0].id]);
  return rows[0];
}

export function createTenantsService(deps: { db: Db }): TenantsService {
  const { db } = deps;

  const createIn = async (tx: Queryable, input: TenantCreate, adminKey?: string, passwordHash?: string) => {
    const tenant = await insertTenant(tx, input);
    const admin = await insertUser(tx, { tenantId: tenant.id, agentCode: 'admin', name: 'Administrator', role: 'admin', passwordHash });
    // The admin's directory entry is the tenant's first version (the tenant is new: no writer waits).
    await tx.query('UPDATE users SET version = 1 WHERE id = $1', [admin.id]);
    await tx.query(`UPDATE tenant_versions SET current_version = 1, collection_marks = '{"users": 1}' WHERE tenant_id = $1`, [tenant.id]);
    const { apiKey } = await issueApiKey(tx, tenant.id, admin.id, adminKey);
    return { tenant: toTenant(tenant), admin: toUser(admin), apiKey };
  };

  return {
    async create(input, opts = {}) {
      try {
        return await db.transaction((tx) => createIn(tx, input, opts.adminKey));
      } catch (error) {
        if (pgErrorCode(error) === PgCodes.uniqueViolation) throw new AppError('DUPLICATE', `Tenant slug "${input.slug}" is taken`);
        throw error;
      }
    },

    async bootstrap(adminKey, opts = {}) {
      return db.transaction(async (tx) => {
        // Instances starting together against one empty database: only one bootstraps.
        await tx.query('SELECT pg_advisory_xact_lock(7240312)');
        const existing = await tx.query('SELECT 1 FROM tenants LIMIT 1');
        // rows, not rowCount: PGlite reports 0 as the rowCount of a SELECT.
        if (existing.rows.length > 0) return undefined;
        const passwordHash = opts.adminPassword === undefined ? undefined : await hashPassword(opts.adminPassword);
        const { apiKey } = await createIn(tx, { slug: 'default', name: 'Default' }, adminKey, passwordHash);
        return { apiKey, generated: adminKey === undefined };
      });
    },

    async findBySlug(slug) {
      const { rows } = await db.query<TenantRow>('SELECT id, slug, name, created_at FROM tenants WHERE slug = $1', [slug]);
      return rows[0] ? toTenant(rows[0]) : undefined;
    },
  };
}
