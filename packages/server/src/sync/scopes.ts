import type { Change } from '@fieldsync/protocol/sync';
import type { Queryable } from '../db/db.js';
import type { CollectionDef, CollectionRegistry, HookResult, MembershipChange, Scope } from './collections.js';

/**
 * Scopes (partial replication): who may see which records. A collection names its scope kind
 * (collections.ts `Scope`); memberships of every kind live in one table, `scope_members`,
 * except the built-in kinds `tenant` (everyone) and `user` (the user the record names).
 * Gaining or losing a scope writes versioned grants and revokes (`scope_events`) that the
 * pull turns into upserts and deletes (docs/sync-protocol.md, "Scopes").
 */

/** The built-in scope kind whose records are visible to the one user they name. */
export const USER_SCOPE = 'user';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

type ScopedDef = CollectionDef & { scope: Exclude<Scope, { kind: 'tenant' }> };

/** Whether records of `def` are visible to only some users of the tenant. */
export const isScoped = (def: CollectionDef): def is ScopedDef => def.scope.kind !== 'tenant';

/** The audience key of scope `kind:id`. */
export const audienceKey = (kind: string, id: string) => `${kind}:${id}`;

/**
 * SQL predicate: the record aliased `r` is visible to the user in parameter `user` of the
 * tenant in parameter `tenant`. Kinds are identifiers (the registry checks them).
 */
export function visibleSql(def: CollectionDef, r: string, tenant: string, user: string): string {
  if (!isScoped(def)) return 'true';
  if (def.scope.kind === USER_SCOPE) return `${r}.${def.scope.column} = ${user}::uuid`;
  return `${r}.${def.scope.column} IN (SELECT m.scope_id FROM scope_members m
            WHERE m.tenant_id = ${tenant} AND m.user_id = ${user}::uuid AND m.kind = '${def.scope.kind}')`;
}

/** The audience keys a user belongs to (their own `user:` key included): the rooms of their sockets. */
export async function audiencesOf(db: Queryable, tenantId: string, userId: string): Promise<string[]> {
  const { rows } = await db.query<{ kind: string; scope_id: string }>(
    'SELECT kind, scope_id FROM scope_members WHERE tenant_id = $1 AND user_id = $2',
    [tenantId, userId],
  );
  return [audienceKey(USER_SCOPE, userId), ...rows.map((r) => audienceKey(r.kind, r.scope_id))];
}

/** The roles a user holds, by audience key, in scopes of the given kinds. */
export async function rolesOf(db: Queryable, tenantId: string, userId: string, kinds: string[]): Promise<Map<string, string>> {
  const roles = new Map<string, string>();
  const stored = kinds.filter((k) => k !== USER_SCOPE);
  if (stored.length > 0) {
    const { rows } = await db.query<{ kind: string; scope_id: string; role: string }>(
      'SELECT kind, scope_id, role FROM scope_members WHERE tenant_id = $1 AND user_id = $2 AND kind = ANY($3::text[])',
      [tenantId, userId, stored],
    );
    for (const r of rows) roles.set(audienceKey(r.kind, r.scope_id), r.role);
  }
  if (kinds.includes(USER_SCOPE)) roles.set(audienceKey(USER_SCOPE, userId), 'owner');
  return roles;
}

/**
 * Makes `members` the members of scope `kind:scopeId` (hook side of `HookTx.setMembers`).
 * Only users of the tenant become members; unknown ids are ignored. A user who gains the
 * scope gets a grant per record of it, one who loses it a revoke, each a new version.
 */
export async function setMembers(
  tx: Queryable & { nextVersion(collection: string): number },
  registry: CollectionRegistry,
  tenantId: string,
  scope: { kind: string; id: string; created?: boolean },
  members: Map<string, string>,
): Promise<Required<HookResult>> {
  const result: Required<HookResult> = { changes: [], userChanges: [], membership: [] };
  const { rows: current } = await tx.query<{ user_id: string; role: string }>(
    'SELECT user_id, role FROM scope_members WHERE tenant_id = $1 AND kind = $2 AND scope_id = $3',
    [tenantId, scope.kind, scope.id],
  );
  const before = new Map(current.map((r) => [r.user_id, r.role]));
  const candidates = [...members.keys()].filter((u) => UUID_RE.test(u) && (!before.has(u) || before.get(u) !== members.get(u)));
  const known = new Set(before.keys());
  if (candidates.length > 0) {
    const { rows } = await tx.query<{ id: string }>('SELECT id FROM users WHERE tenant_id = $1 AND id = ANY($2::uuid[])', [
      tenantId,
      candidates,
    ]);
    for (const r of rows) known.add(r.id);
  }
  const after = new Map([...members].filter(([u]) => known.has(u)));
  const gained = [...after.keys()].filter((u) => !before.has(u));
  const lost = [...before.keys()].filter((u) => !after.has(u));
  const changedRole = [...after.keys()].filter((u) => before.has(u) && before.get(u) !== after.get(u));
  if (gained.length + lost.length + changedRole.length === 0) return result;

  await tx.query(
    `WITH gone AS (
       DELETE FROM scope_members WHERE tenant_id = $1 AND kind = $2 AND scope_id = $3 AND NOT (user_id = ANY($4::uuid[])))
     INSERT INTO scope_members (tenant_id, kind, scope_id, user_id, role)
     SELECT $1, $2, $3, m.user_id, m.role FROM jsonb_to_recordset($5::jsonb) AS m(user_id uuid, role text)
     ON CONFLICT (tenant_id, kind, scope_id, user_id) DO UPDATE SET role = EXCLUDED.role`,
    [tenantId, scope.kind, scope.id, [...after.keys()], JSON.stringify([...after].map(([user_id, role]) => ({ user_id, role })))],
  );
  const key = audienceKey(scope.kind, scope.id);
  for (const userId of gained) result.membership.push({ userId, audience: key, member: true });
  for (const userId of lost) result.membership.push({ userId, audience: key, member: false });
  if (scope.created || gained.length + lost.length === 0) return result;

  // Every record of the scope (the scope's own record, even deleted; the others while live).
  const defs = registry.inScope(scope.kind);
  const records: { def: ScopedDef; id: string }[] = [];
  for (const def of defs) {
    const { rows } = await tx.query<{ id: string }>(
      `SELECT id FROM ${def.table} WHERE tenant_id = $1 AND ${def.scope.column} = $2 ${def.scope.field === 'id' ? '' : 'AND NOT is_deleted'} ORDER BY id`,
      [tenantId, scope.id],
    );
    for (const r of rows) records.push({ def, id: r.id });
  }
  const events: { user_id: string; collection: string; record_id: string; kind: 'grant' | 'revoke'; version: number }[] = [];
  for (const [users, kind] of [
    [gained, 'grant'],
    [lost, 'revoke'],
  ] as const) {
    for (const userId of users) {
      for (const r of records) events.push({ user_id: userId, collection: r.def.name, record_id: r.id, kind, version: tx.nextVersion(r.def.name) });
    }
  }
  if (events.length === 0) return result;
  // One scope event per user and record: the newest replaces the older ones, so the pull
  // needs no "is it the latest?" lookup, and the table cannot outgrow users x records.
  await tx.query(
    `WITH replaced AS (
       DELETE FROM scope_events s USING jsonb_to_recordset($2::jsonb) AS e(user_id uuid, record_id uuid)
        WHERE s.tenant_id = $1 AND s.user_id = e.user_id AND s.record_id = e.record_id)
     INSERT INTO scope_events (tenant_id, version, user_id, collection, record_id, kind)
     SELECT $1, e.version, e.user_id, e.collection, e.record_id, e.kind
       FROM jsonb_to_recordset($2::jsonb) AS e(version bigint, user_id uuid, collection text, record_id uuid, kind text)`,
    [tenantId, JSON.stringify(events)],
  );
  const data = new Map<string, Record<string, unknown>>();
  if (gained.length > 0) {
    for (const def of defs) {
      const ids = records.filter((r) => r.def === def).map((r) => r.id);
      if (ids.length === 0) continue;
      const { rows } = await tx.query<{ id: string; data: Record<string, unknown> }>(
        `SELECT r.id, ${def.wireSql} AS data FROM ${def.table} r WHERE r.tenant_id = $1 AND r.id = ANY($2::uuid[])`,
        [tenantId, ids],
      );
      for (const r of rows) data.set(r.id, r.data);
    }
  }
  for (const e of events) {
    const change: Change =
      e.kind === 'grant'
        ? { collection: e.collection, op: 'upsert', id: e.record_id, version: e.version, data: data.get(e.record_id)! }
        : { collection: e.collection, op: 'delete', id: e.record_id, version: e.version, data: { id: e.record_id, isDeleted: true } };
    result.userChanges.push({ userId: e.user_id, change });
  }
  return result;
}

export type { MembershipChange };
