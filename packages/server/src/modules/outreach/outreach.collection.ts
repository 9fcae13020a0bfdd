import {
  CallSessionCreate,
  CallSessionUpdate,
  ProjectContactCreate,
  ProjectContactUpdate,
  ProjectCreate,
  ProjectUpdate,
  TerminalSessionCreate,
  TerminalSessionUpdate,
} from '@fieldsync/protocol/outreach';
import type { Change } from '@fieldsync/protocol/sync';
import type { Queryable } from '../../db/db.js';
import { invalid } from '../../errors.js';
import type { AppliedChange, CollectionDef, FieldDef, HookTx, WriteContext } from '../../sync/collections.js';
import { isoSql } from '../contacts/contacts.collection.js';
import { enqueueExport, type ExportKind } from './hubspot/hubspot.outbox.js';

const text = (column: string): FieldDef => ({ column, type: 'text' });
const base = `'id', r.id, 'version', r.version, 'isDeleted', r.is_deleted, 'createdAt', ${isoSql('r.created_at')}, 'updatedAt', ${isoSql('r.updated_at')}`;

export const PROJECT_WIRE_SQL = `json_build_object(${base}, 'projectId', r.project_id, 'name', r.name, 'status', r.status,
  'callSuppressed', r.call_suppressed, 'nextCallEligibleAt', ${isoSql('r.next_call_eligible_at')}, 'properties', r.properties)`;
export const PROJECT_CONTACT_WIRE_SQL = `json_build_object(${base}, 'projectId', r.project_id, 'contactId', r.contact_id,
  'role', r.role, 'suppressForProject', r.suppress_for_project)`;
export const CALL_SESSION_WIRE_SQL = `json_build_object(${base}, 'callSessionId', r.call_session_id, 'projectId', r.project_id,
  'contactId', r.contact_id, 'outcome', r.outcome, 'startedAt', ${isoSql('r.started_at')}, 'durationSeconds', r.duration_seconds,
  'notes', r.notes, 'agentCode', r.agent_code)`;
export const TERMINAL_SESSION_WIRE_SQL = `json_build_object(${base}, 'terminalId', r.terminal_id, 'scope', r.scope,
  'projectId', r.project_id, 'contactId', r.contact_id, 'reason', r.reason, 'expiresAt', ${isoSql('r.expires_at')},
  'createdByAgent', r.created_by_agent)`;

/** Which of the external project ids the tenant has (links, calls and terminal sessions name projects by them). */
export async function existingProjects(tx: Queryable, tenantId: string, projectIds: string[]): Promise<Set<string>> {
  const { rows } = await tx.query<{ project_id: string }>(
    'SELECT project_id FROM projects WHERE tenant_id = $1 AND project_id = ANY($2::text[]) AND NOT is_deleted',
    [tenantId, projectIds],
  );
  return new Set(rows.map((r) => r.project_id));
}

const projectRef = { field: 'projectId', what: 'a project (by its external projectId)', existing: existingProjects } as const;
const contactRef = { field: 'contactId', localField: 'contactLocalId', collection: 'contacts' } as const;

/** How the outreach collections are exported: `exportAll` when HUBSPOT_ACCESS_TOKEN enables every tenant. */
export interface OutreachCollectionOptions {
  exportAll: boolean;
  /** Called when a write queued exports for the tenant (before its commit: the caller waits for the commit). */
  onQueued?: (tenantId: string) => void;
}

/** The records of `applied` to export as `kind` (none for a global terminal session: no HubSpot object). */
const exportHook =
  (kind: ExportKind, opts: OutreachCollectionOptions, filter: (after: Record<string, unknown>) => boolean = () => true) =>
  async (tx: Queryable, applied: AppliedChange[], ctx: WriteContext) => {
    const rows = applied.filter((a) => filter(a.after)).map((a) => ({ id: a.id, version: Number(a.after.version) }));
    if ((await enqueueExport(tx, ctx.tenantId, kind, rows, opts.exportAll)) > 0) opts.onQueued?.(ctx.tenantId);
  };

/**
 * Wraps a collection so its writes queue a HubSpot export in the write transaction (contacts
 * live in their own module; their export is outreach's concern).
 */
export function exportedAs(def: CollectionDef, kind: ExportKind, opts: OutreachCollectionOptions): CollectionDef {
  if (!def.write) return def;
  const inner = def.write.afterWrite;
  const enqueue = exportHook(kind, opts);
  return {
    ...def,
    write: {
      ...def.write,
      async afterWrite(tx, applied, ctx) {
        const result = inner ? await inner(tx, applied, ctx) : { changes: [] };
        await enqueue(tx, applied, ctx);
        return result;
      },
    },
  };
}

export function projectsCollection(opts: OutreachCollectionOptions): CollectionDef {
  const enqueue = exportHook('deal', opts);
  return {
    name: 'projects',
    aliases: ['project'],
    table: 'projects',
    wireSql: PROJECT_WIRE_SQL,
    scope: { kind: 'tenant' },
    write: {
      fields: {
        projectId: text('project_id'),
        name: text('name'),
        status: text('status'),
        callSuppressed: { column: 'call_suppressed', type: 'boolean' },
        nextCallEligibleAt: { column: 'next_call_eligible_at', type: 'timestamptz' },
        properties: { column: 'properties', type: 'jsonb' },
      },
      createSchema: ProjectCreate,
      updateSchema: ProjectUpdate,
      operations: ['create', 'update'],
      defaults: { status: 'active', callSuppressed: false, nextCallEligibleAt: null, properties: {} },
      unique: ['projectId'],
      async afterWrite(tx, applied, ctx) {
        await enqueue(tx, applied, ctx);
        return { changes: [] };
      },
    },
  };
}

export function projectContactsCollection(opts: OutreachCollectionOptions): CollectionDef {
  const enqueue = exportHook('association', opts);
  return {
    name: 'projectContacts',
    aliases: ['projectContact'],
    table: 'project_contacts',
    wireSql: PROJECT_CONTACT_WIRE_SQL,
    scope: { kind: 'tenant' },
    write: {
      fields: {
        projectId: text('project_id'),
        contactId: { column: 'contact_id', type: 'uuid' },
        role: text('role'),
        suppressForProject: { column: 'suppress_for_project', type: 'boolean' },
      },
      createSchema: ProjectContactCreate,
      updateSchema: ProjectContactUpdate,
      operations: ['create', 'update'],
      defaults: { role: null, suppressForProject: false },
      external: [projectRef],
      refs: [contactRef],
      async afterWrite(tx, applied, ctx) {
        await enqueue(tx, applied, ctx);
        return { changes: [] };
      },
    },
  };
}

/** Appends only: created once (idempotent on `callSessionId`), never updated or deleted. */
export function callSessionsCollection(opts: OutreachCollectionOptions): CollectionDef {
  const enqueue = exportHook('note', opts);
  return {
    name: 'callSessions',
    aliases: ['callSession'],
    table: 'call_sessions',
    wireSql: CALL_SESSION_WIRE_SQL,
    scope: { kind: 'tenant' },
    write: {
      fields: {
        callSessionId: text('call_session_id'),
        projectId: text('project_id'),
        contactId: { column: 'contact_id', type: 'uuid' },
        outcome: text('outcome'),
        startedAt: { column: 'started_at', type: 'timestamptz' },
        durationSeconds: { column: 'duration_seconds', type: 'double precision' },
        notes: text('notes'),
        agentCode: { column: 'agent_code', type: 'text', audit: false },
      },
      createSchema: CallSessionCreate,
      updateSchema: CallSessionUpdate,
      operations: ['create'],
      defaults: { callSessionId: null, durationSeconds: null, notes: null, agentCode: null },
      unique: ['callSessionId'],
      idempotent: 'callSessionId',
      external: [projectRef],
      refs: [contactRef],
      prepare: (op, fields, _before, ctx) => (op === 'create' ? { ...fields, agentCode: ctx.agentCode ?? null } : fields),
      async afterWrite(tx, applied, ctx) {
        const changes = await extendCooldowns(tx, applied, ctx);
        await enqueue(tx, applied, ctx);
        return { changes };
      },
    },
  };
}

/** A terminal session's ids must fit its scope (SPEC §9); the database checks it again. */
function checkTerminalScope(fields: Record<string, unknown>): Record<string, unknown> {
  const has = (f: string) => fields[f] !== undefined && fields[f] !== null;
  switch (fields.scope) {
    case 'project':
      if (!has('projectId')) throw invalid('projectId', 'is required for scope "project"');
      break;
    case 'contact':
      if (has('projectId')) throw invalid('projectId', 'must be absent for scope "contact" (use scope "project" for one pair)');
      break;
    case 'global':
      if (has('projectId')) throw invalid('projectId', 'must be absent for scope "global"');
      if (has('contactId')) throw invalid('contactId', 'must be absent for scope "global"');
      break;
  }
  return fields;
}

/** Terminal states: created once (idempotent on `terminalId`), active until `expiresAt`. */
export function terminalSessionsCollection(opts: OutreachCollectionOptions): CollectionDef {
  const enqueue = exportHook('terminal', opts, (after) => after.scope !== 'global');
  return {
    name: 'terminalSessions',
    aliases: ['terminalSession'],
    table: 'terminal_sessions',
    wireSql: TERMINAL_SESSION_WIRE_SQL,
    scope: { kind: 'tenant' },
    write: {
      fields: {
        terminalId: text('terminal_id'),
        scope: text('scope'),
        projectId: text('project_id'),
        contactId: { column: 'contact_id', type: 'uuid' },
        reason: text('reason'),
        expiresAt: { column: 'expires_at', type: 'timestamptz' },
        createdByAgent: { column: 'created_by_agent', type: 'text', audit: false },
      },
      createSchema: TerminalSessionCreate,
      updateSchema: TerminalSessionUpdate,
      operations: ['create'],
      defaults: { terminalId: null, projectId: null, contactId: null, expiresAt: null, createdByAgent: null },
      unique: ['terminalId'],
      idempotent: 'terminalId',
      external: [projectRef],
      refs: [contactRef],
      normalise: checkTerminalScope,
      prepare: (op, fields, _before, ctx) => (op === 'create' ? { ...fields, createdByAgent: ctx.agentCode ?? null } : fields),
      async afterWrite(tx, applied, ctx) {
        await enqueue(tx, applied, ctx);
        return { changes: [] };
      },
    },
  };
}

/**
 * A call moves its project's `nextCallEligibleAt` to at least `startedAt` + the tenant's
 * cooldown: each project that moves gets a new version (and an audit entry), in the call's
 * transaction, so devices receive it with the call.
 */
async function extendCooldowns(tx: HookTx, applied: AppliedChange[], ctx: WriteContext): Promise<Change[]> {
  const calls = applied.filter((a) => a.op === 'create').map((a) => ({ project_id: a.after.projectId, started_at: a.after.startedAt }));
  if (calls.length === 0) return [];
  const { rows: moving } = await tx.query<{ id: string; before: string | null; next: string }>(
    `WITH calls AS (
       SELECT c.project_id, max(c.started_at) AS last FROM jsonb_to_recordset($2::jsonb) AS c(project_id text, started_at timestamptz) GROUP BY c.project_id),
     s AS (SELECT coalesce((SELECT call_cooldown_hours FROM outreach_settings WHERE tenant_id = $1), 24) AS hours)
     SELECT p.id, ${isoSql('p.next_call_eligible_at')} AS before, ${isoSql('(calls.last + make_interval(hours => s.hours))')} AS next
       FROM projects p JOIN calls ON calls.project_id = p.project_id CROSS JOIN s
      WHERE p.tenant_id = $1 AND (p.next_call_eligible_at IS NULL OR p.next_call_eligible_at < calls.last + make_interval(hours => s.hours))
      ORDER BY p.id`,
    [ctx.tenantId, JSON.stringify(calls)],
  );
  if (moving.length === 0) return [];
  const rows = moving.map((m) => ({ id: m.id, version: tx.nextVersion('projects'), next: m.next, before: m.before }));
  const { rows: written } = await tx.query<{ id: string; version: number; data: Record<string, unknown> }>(
    `UPDATE projects r SET next_call_eligible_at = v.next, version = v.version, updated_at = now()
       FROM jsonb_to_recordset($1::jsonb) AS v(id uuid, version bigint, next timestamptz) WHERE r.id = v.id AND r.tenant_id = $2
     RETURNING r.id, r.version, ${PROJECT_WIRE_SQL} AS data`,
    [JSON.stringify(rows), ctx.tenantId],
  );
  await tx.query(
    `INSERT INTO audit_log (tenant_id, collection, record_id, version, action, changed_fields, changes, user_id, agent_code, device_id)
     SELECT $1, 'projects', v.id, v.version, 'update', ARRAY['nextCallEligibleAt'],
            jsonb_build_object('nextCallEligibleAt', jsonb_build_object('from', v.before, 'to', v.next)), $2, $3, $4
       FROM jsonb_to_recordset($5::jsonb) AS v(id uuid, version bigint, before text, next text)`,
    [ctx.tenantId, ctx.userId ?? null, ctx.agentCode ?? null, ctx.deviceId ?? null, JSON.stringify(rows)],
  );
  return written.map((w) => ({ collection: 'projects', op: 'upsert' as const, id: w.id, version: Number(w.version), data: w.data }));
}

