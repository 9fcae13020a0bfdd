import type { Queryable } from '../db/db.js';
import { DEFAULT_POLICY, type Policy, type Strategy } from './conflicts.js';

/** The conflict policies of one tenant: one per collection, most_recent_wins by default. */
export interface TenantPolicies {
  get(collection: string): Policy;
}

export interface PolicyStore {
  forTenant(db: Queryable, tenantId: string): Promise<TenantPolicies>;
  list(db: Queryable, tenantId: string): Promise<({ collection: string } & Policy)[]>;
  set(db: Queryable, tenantId: string, collection: string, policy: Policy): Promise<void>;
}

/** Policies live in `conflict_policies`; read inside the push transaction, so a change applies at once. */
export function createPolicyStore(): PolicyStore {
  const read = async (db: Queryable, tenantId: string) => {
    const { rows } = await db.query<{ collection: string; strategy: Strategy; monotonic: Record<string, unknown[]> | null }>(
      'SELECT collection, strategy, monotonic FROM conflict_policies WHERE tenant_id = $1 ORDER BY collection',
      [tenantId],
    );
    return rows.map((r) => ({ collection: r.collection, strategy: r.strategy, ...(r.monotonic ? { monotonic: r.monotonic } : {}) }));
  };
  return {
    async forTenant(db, tenantId) {
      const byCollection = new Map((await read(db, tenantId)).map((p) => [p.collection, p as Policy]));
      return { get: (collection) => byCollection.get(collection) ?? DEFAULT_POLICY };
    },
    list: read,
    async set(db, tenantId, collection, policy) {
      await db.query(
        `INSERT INTO conflict_policies (tenant_id, collection, strategy, monotonic) VALUES ($1, $2, $3, $4)
         ON CONFLICT (tenant_id, collection) DO UPDATE SET strategy = EXCLUDED.strategy, monotonic = EXCLUDED.monotonic, updated_at = now()`,
        [tenantId, collection, policy.strategy, policy.monotonic ? JSON.stringify(policy.monotonic) : null],
      );
    },
  };
}
