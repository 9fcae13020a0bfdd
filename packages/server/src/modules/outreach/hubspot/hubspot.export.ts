import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { HubspotConfig } from '../../../config/config.js';
import type { Db, Queryable } from '../../../db/db.js';
import { CONTACT_WIRE_SQL } from '../../contacts/contacts.collection.js';
import { CALL_SESSION_WIRE_SQL, PROJECT_CONTACT_WIRE_SQL, PROJECT_WIRE_SQL, TERMINAL_SESSION_WIRE_SQL } from '../outreach.collection.js';
import { createHubspotApi, HubspotError, type HubspotApi, type ObjectType, type UpsertInput } from './hubspot.client.js';
import {
  claimDue,
  completeEntries,
  deferEntries,
  enqueueAll,
  enqueueExport,
  exportedObjects,
  takeTurn,
  failEntries,
  KIND_TABLES,
  type ExportKind,
  type OutboxEntry,
} from './hubspot.outbox.js';
import { openToken } from './hubspot.token.js';

/** HubSpot's batch limit. */
export const BATCH_SIZE = 100;
/** Batches one worker has in flight at once: one more than the limiter lets run together, so a request is always ready. */
const PARALLEL_BATCHES = 3;
/** How long an entry waits for the objects it needs (a deal, a contact) to be exported first. */
const DEPENDENCY_WAIT_MS = 500;
/** How long a tenant's token is used before it is read again (a PUT takes effect within this). */
const TOKEN_CACHE_MS = 5000;
/** How long entries of a tenant without a token wait before the next look. */
const NO_TOKEN_WAIT_MS = 60_000;

type Rec = Record<string, unknown>;
/** An entry to complete; `sent: false` when nothing went to HubSpot for it (deleted, acknowledged already). */
type Done = { entryId: number; kind: ExportKind; recordId: string; hubspotId: string | null; version: number; sent?: false };

export interface HubspotExporter {
  /** Exports due entries, batch after batch, until none is due (or `budgetMs` passed, or stop). */
  drain(budgetMs?: number): Promise<{ batches: number; exported: number }>;
  /** Stops after the batch in progress; `drain` does nothing until `start`. */
  stop(): void;
  /** Lets `drain` work again after `stop`. */
  start(): void;
  readonly workerId: string;
}

const str = (v: unknown): string => (v === null || v === undefined ? '' : typeof v === 'string' ? v : typeof v === 'object' ? JSON.stringify(v) : String(v));

/** A contact as HubSpot contact properties. */
function contactProperties(c: Rec): Record<string, string> {
  return {
    firstname: str(c.firstName),
    lastname: str(c.lastName),
    phone: str(c.phonePrimary),
    mobilephone: str(c.phoneSecondary),
    email: str(c.email),
    company: str(c.company),
    fieldsync_do_not_call: str(c.doNotCall),
    fieldsync_preferred_channel: str(c.preferredChannel),
  };
}

/**
 * A project as HubSpot deal properties. Its free-form properties travel as one JSON text
 * property: HubSpot refuses a whole batch for one property it does not know.
 */
function dealProperties(p: Rec): Record<string, string> {
  return {
    dealname: str(p.name),
    fieldsync_properties: JSON.stringify(p.properties ?? {}),
    fieldsync_project_id: str(p.projectId),
    fieldsync_status: str(p.status),
    fieldsync_call_suppressed: str(p.callSuppressed),
    fieldsync_next_call_eligible_at: str(p.nextCallEligibleAt),
  };
}

/** A call session as a HubSpot note. */
function noteProperties(s: Rec): Record<string, string> {
  const parts = [`Call: ${str(s.outcome)}`];
  if (s.durationSeconds !== null && s.durationSeconds !== undefined) parts.push(`${str(s.durationSeconds)} s`);
  if (s.agentCode) parts.push(`agent ${str(s.agentCode)}`);
  return {
    hs_timestamp: str(s.startedAt),
    hs_note_body: `${parts.join(', ')}${s.notes ? `\n\n${str(s.notes)}` : ''}`,
    fieldsync_call_outcome: str(s.outcome),
    fieldsync_call_session_id: str(s.callSessionId),
    fieldsync_project_id: str(s.projectId),
  };
}

/** A terminal session as properties of the deal (whole project) or the contact (contact, or one pair). */
function terminalProperties(t: Rec): Record<string, string> {
  return {
    fieldsync_terminal_reason: str(t.reason),
    fieldsync_terminal_scope: str(t.scope),
    fieldsync_terminal_project_id: str(t.projectId),
    fieldsync_terminal_expires_at: str(t.expiresAt),
    fieldsync_terminal_at: str(t.createdAt),
  };
}

/**
 * The HubSpot export worker (SPEC §9): claims due outbox entries (one tenant, one kind, up to
 * 100), reads the records as they are now, sends them on a CRM v3 batch endpoint, and records
 * what HubSpot acknowledged. Failures go back to the outbox with their backoff (429 and 5xx
 * honour Retry-After and pause the tenant), dead letters after `maxAttempts`.
 *
 * Delivery: an entry is completed only by the worker holding its lease, in one transaction
 * with the HubSpot ids, so an acknowledged version is never sent again. A worker that dies
 * after HubSpot answered but before that commit leaves the entry to the next lease holder,
 * which sends it again: every send is an upsert keyed by `fieldsync_id` (or an association,
 * idempotent in HubSpot), so even that second send creates nothing twice.
 */
export function createHubspotExporter(deps: {
  db: Db;
  config: HubspotConfig;
  /** The key that opens tenants' sealed tokens. */
  tokenKey: Buffer;
  logger: Logger;
  /** For tests: runs after HubSpot answered a batch, before the answer is recorded (a crash there). */
  afterSend?: (entries: OutboxEntry[]) => Promise<void>;
  /** For tests: the HubSpot client of a token. */
  apiFor?: (token: string) => HubspotApi;
}): HubspotExporter {
  const { db, config, logger } = deps;
  const workerId = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  const exportAll = config.accessToken !== undefined;
  const apis = new Map<string, HubspotApi>();
  let stopped = false;

  const apiFor = (token: string) => {
    let api = apis.get(token);
    if (!api) {
      api = deps.apiFor?.(token) ?? createHubspotApi({ accessToken: token, baseUrl: config.baseUrl, timeoutMs: config.timeoutMs, requestsPerSecond: config.requestsPerSecond });
      apis.set(token, api);
    }
    return api;
  };

  /** The tenant's own token, else the server's; read at most every TOKEN_CACHE_MS per tenant. */
  const tokens = new Map<string, { token: string | undefined; at: number }>();
  const tokenOf = async (tenantId: string): Promise<string | undefined> => {
    const cached = tokens.get(tenantId);
    if (cached && Date.now() - cached.at < TOKEN_CACHE_MS) return cached.token;
    const { rows } = await db.query<{ token_sealed: string | null }>('SELECT token_sealed FROM hubspot_integrations WHERE tenant_id = $1', [tenantId]);
    const sealed = rows[0]?.token_sealed;
    const token = (sealed ? openToken(deps.tokenKey, sealed) : undefined) ?? config.accessToken;
    tokens.set(tenantId, { token, at: Date.now() });
    return token;
  };

  /** With HUBSPOT_ACCESS_TOKEN, every tenant not yet exported queues its whole data set once. */
  const backfillServerTenants = async () => {
    if (!exportAll) return;
    const { rows } = await db.query<{ id: string }>(
      `SELECT t.id FROM tenants t LEFT JOIN hubspot_integrations i ON i.tenant_id = t.id
        WHERE coalesce(i.enabled, true) AND NOT coalesce(i.backfilled, false)`,
    );
    for (const { id } of rows) {
      await db.transaction(async (tx) => {
        const { rows: claimed } = await tx.query(
          `INSERT INTO hubspot_integrations (tenant_id, backfilled) VALUES ($1, true)
           ON CONFLICT (tenant_id) DO UPDATE SET backfilled = true WHERE NOT hubspot_integrations.backfilled RETURNING tenant_id`,
          [id],
        );
        if (claimed.length > 0) await enqueueAll(tx, id);
      });
    }
  };

  /** The records as they are now, with what HubSpot acknowledged of each: one query. */
  const recordsOf = async (kind: ExportKind, tenantId: string, ids: string[]) => {
    const wire = { contact: CONTACT_WIRE_SQL, deal: PROJECT_WIRE_SQL, association: PROJECT_CONTACT_WIRE_SQL, note: CALL_SESSION_WIRE_SQL, terminal: TERMINAL_SESSION_WIRE_SQL }[kind];
    const { rows } = await db.query<{ id: string; data: Rec | null; hubspot_id: string | null; synced_version: string | null }>(
      `SELECT i.id, ${wire} AS data, h.hubspot_id, h.synced_version
         FROM unnest($2::uuid[]) AS i(id)
         LEFT JOIN ${KIND_TABLES[kind]} r ON r.tenant_id = $1 AND r.id = i.id
         LEFT JOIN hubspot_objects h ON h.tenant_id = $1 AND h.kind = $3 AND h.record_id = i.id`,
      [tenantId, ids, kind],
    );
    const records = new Map<string, Rec>();
    const acked = new Map<string, { hubspotId: string; version: number }>();
    for (const r of rows) {
      if (r.data && r.data.id !== null) records.set(r.id, r.data);
      if (r.hubspot_id !== null) acked.set(r.id, { hubspotId: r.hubspot_id, version: Number(r.synced_version) });
    }
    return { records, acked };
  };

  /** Internal ids (and versions) of projects named by external id. */
  const projectsByExternal = async (tenantId: string, projectIds: string[]) => {
    const { rows } = await db.query<{ project_id: string; id: string; version: string; is_deleted: boolean }>(
      'SELECT project_id, id, version, is_deleted FROM projects WHERE tenant_id = $1 AND project_id = ANY($2::text[])',
      [tenantId, projectIds],
    );
    return new Map(rows.map((r) => [r.project_id, { id: r.id, version: Number(r.version), deleted: r.is_deleted }]));
  };

  /** Versions of contacts (to queue one that a dependent entry needs). */
  const contactsById = async (tenantId: string, ids: string[]) => {
    const { rows } = await db.query<{ id: string; version: string; is_deleted: boolean }>(
      'SELECT id, version, is_deleted FROM contacts WHERE tenant_id = $1 AND id = ANY($2::uuid[])',
      [tenantId, ids],
    );
    return new Map(rows.map((r) => [r.id, { id: r.id, version: Number(r.version), deleted: r.is_deleted }]));
  };

  /**
   * Sends one claimed batch. Returns the entries to complete; those waiting for dependencies are
   * deferred here; a HubSpot failure is thrown for the caller to record.
   */
  const send = async (entries: OutboxEntry[], api: HubspotApi): Promise<{ done: Done[]; refused: Map<number, string> }> => {
    const { tenantId, kind } = entries[0];
    const ids = entries.map((e) => e.recordId);
    const { records, acked } = await recordsOf(kind, tenantId, ids);
    const done: Done[] = [];
    const refused = new Map<number, string>();
    const live: { entry: OutboxEntry; record: Rec; version: number }[] = [];
    for (const entry of entries) {
      const record = records.get(entry.recordId);
      const version = Number(record?.version ?? entry.recordVersion);
      const ack = acked.get(entry.recordId);
      // Gone, deleted (export is upsert only), or this version acknowledged already: nothing to send.
      if (!record || record.isDeleted === true || (ack && ack.version >= version)) {
        done.push({ entryId: entry.id, kind, recordId: entry.recordId, hubspotId: ack?.hubspotId ?? null, version: Math.max(version, ack?.version ?? 0), sent: false });
      } else live.push({ entry, record, version });
    }
    if (live.length === 0) return { done, refused };

    if (kind === 'contact' || kind === 'deal') {
      const type: ObjectType = kind === 'contact' ? 'contacts' : 'deals';
      const inputs: UpsertInput[] = live.map((l) => ({ fieldsyncId: l.entry.recordId, properties: kind === 'contact' ? contactProperties(l.record) : dealProperties(l.record) }));
      const result = await api.upsert(type, inputs);
      await deps.afterSend?.(entries);
      for (const l of live) {
        const hubspotId = result.ids.get(l.entry.recordId);
        if (hubspotId) done.push({ entryId: l.entry.id, kind, recordId: l.entry.recordId, hubspotId, version: l.version });
        else refused.set(l.entry.id, result.refused.get(l.entry.recordId) ?? 'refused');
      }
      return { done, refused };
    }

    // The others need the HubSpot ids of their deal and contact (or of their target).
    const projectIds = [...new Set(live.map((l) => l.record.projectId).filter((p): p is string => typeof p === 'string'))];
    const contactIds = [...new Set(live.map((l) => l.record.contactId).filter((c): c is string => typeof c === 'string'))];
    const projects = await projectsByExternal(tenantId, projectIds);
    const contacts = await contactsById(tenantId, contactIds);
    const deals = await exportedObjects(db, tenantId, 'deal', [...projects.values()].map((p) => p.id));
    const people = await exportedObjects(db, tenantId, 'contact', contactIds);

    const waiting: number[] = [];
    const needDeals = new Map<string, number>();
    const needContacts = new Map<string, number>();
    const ready: { entry: OutboxEntry; record: Rec; version: number; deal?: string; contact?: string; dealRecord?: string }[] = [];
    for (const l of live) {
      const project = typeof l.record.projectId === 'string' ? projects.get(l.record.projectId) : undefined;
      const contact = typeof l.record.contactId === 'string' ? contacts.get(l.record.contactId) : undefined;
      // Which ends this entry needs: terminal sessions need only their target.
      const wantsDeal = kind !== 'terminal' ? true : l.record.contactId === null;
      const wantsContact = kind !== 'terminal' ? true : l.record.contactId !== null;
      // An end that is gone or deleted will never be exported: nothing to send for this entry.
      if ((wantsDeal && (!project || project.deleted)) || (wantsContact && (!contact || contact.deleted))) {
        done.push({ entryId: l.entry.id, kind, recordId: l.entry.recordId, hubspotId: null, version: l.version, sent: false });
        continue;
      }
      const deal = wantsDeal ? deals.get(project!.id)?.hubspotId : undefined;
      const person = wantsContact ? people.get(contact!.id)?.hubspotId : undefined;
      if ((wantsDeal && !deal) || (wantsContact && !person)) {
        if (wantsDeal && !deal) needDeals.set(project!.id, project!.version);
        if (wantsContact && !person) needContacts.set(contact!.id, contact!.version);
        waiting.push(l.entry.id);
        continue;
      }
      ready.push({ ...l, deal, contact: person, dealRecord: project?.id });
    }
    if (waiting.length > 0) {
      // Make sure what they wait for is queued (it may predate the export), then wait for it.
      await enqueueExport(db, tenantId, 'deal', [...needDeals].map(([id, version]) => ({ id, version })), true);
      await enqueueExport(db, tenantId, 'contact', [...needContacts].map(([id, version]) => ({ id, version })), true);
      await deferEntries(db, workerId, waiting, DEPENDENCY_WAIT_MS);
    }
    if (ready.length === 0) return { done, refused };

    if (kind === 'association') {
      await api.associate('deals', 'contacts', 'deal_to_contact', ready.map((r) => ({ from: r.deal!, to: r.contact! })));
      await deps.afterSend?.(entries);
      for (const r of ready) done.push({ entryId: r.entry.id, kind, recordId: r.entry.recordId, hubspotId: `${r.deal}:${r.contact}`, version: r.version });
      return { done, refused };
    }

    if (kind === 'note') {
      const result = await api.upsert('notes', ready.map((r) => ({ fieldsyncId: r.entry.recordId, properties: noteProperties(r.record) })));
      const written = ready.filter((r) => result.ids.has(r.entry.recordId));
      await api.associate('notes', 'deals', 'note_to_deal', written.map((r) => ({ from: result.ids.get(r.entry.recordId)!, to: r.deal! })));
      await api.associate('notes', 'contacts', 'note_to_contact', written.map((r) => ({ from: result.ids.get(r.entry.recordId)!, to: r.contact! })));
      await deps.afterSend?.(entries);
      for (const r of ready) {
        const hubspotId = result.ids.get(r.entry.recordId);
        if (hubspotId) done.push({ entryId: r.entry.id, kind, recordId: r.entry.recordId, hubspotId, version: r.version });
        else refused.set(r.entry.id, result.refused.get(r.entry.recordId) ?? 'refused');
      }
      return { done, refused };
    }

    // Terminal sessions: properties on their deal or contact; one input per target (the newest wins).
    const byTarget = new Map<string, { type: ObjectType; fieldsyncId: string; record: Rec }>();
    for (const r of [...ready].sort((a, b) => str(a.record.createdAt).localeCompare(str(b.record.createdAt)))) {
      const type: ObjectType = r.record.contactId === null ? 'deals' : 'contacts';
      const fieldsyncId = type === 'deals' ? r.dealRecord! : (r.record.contactId as string);
      byTarget.set(`${type}:${fieldsyncId}`, { type, fieldsyncId, record: r.record });
    }
    for (const type of ['deals', 'contacts'] as const) {
      const inputs = [...byTarget.values()].filter((t) => t.type === type).map((t) => ({ fieldsyncId: t.fieldsyncId, properties: terminalProperties(t.record) }));
      if (inputs.length > 0) await api.upsert(type, inputs);
    }
    await deps.afterSend?.(entries);
    for (const r of ready) done.push({ entryId: r.entry.id, kind, recordId: r.entry.recordId, hubspotId: r.record.contactId === null ? r.deal! : r.contact!, version: r.version });
    return { done, refused };
  };

  /** One claimed batch, start to end: its outcome is recorded whatever happens. */
  const process1 = async (entries: OutboxEntry[]): Promise<number> => {
    const { tenantId } = entries[0];
    const ids = entries.map((e) => e.id);
    const token = await tokenOf(tenantId);
    if (!token) {
      await failEntries(db, workerId, tenantId, ids, { error: 'No HubSpot access token for this organisation', countTry: false, maxAttempts: config.maxAttempts, retryBaseMs: config.retryBaseMs, notBeforeMs: NO_TOKEN_WAIT_MS });
      return 0;
    }
    const base = { maxAttempts: config.maxAttempts, retryBaseMs: config.retryBaseMs };
    try {
      const { done, refused } = await send(entries, apiFor(token));
      const exported = await db.transaction((tx: Queryable) => completeEntries(tx, workerId, tenantId, done));
      if (refused.size > 0) {
        await failEntries(db, workerId, tenantId, [...refused.keys()], { ...base, error: [...refused.values()][0], countTry: true });
      }
      return exported;
    } catch (error) {
      if (error instanceof HubspotError) {
        const rateLimited = error.status === 429;
        const wait = error.retryAfterMs ?? (rateLimited ? 10_000 : 0);
        logger.warn({ tenantId, kind: entries[0].kind, entries: entries.length, status: error.status, retryAfterMs: error.retryAfterMs }, 'hubspot export: batch failed');
        // 429: HubSpot's limit, not the entries' fault: wait as told without using up a try.
        await failEntries(db, workerId, tenantId, ids, { ...base, error: error.message, countTry: !rateLimited, notBeforeMs: wait, backoffUntilMs: wait });
        return 0;
      }
      logger.error({ err: error, tenantId, kind: entries[0].kind }, 'hubspot export: batch failed');
      await failEntries(db, workerId, tenantId, ids, { ...base, error: `Export failed: ${(error as Error).message}`, countTry: true }).catch(() => {});
      return 0;
    }
  };

  return {
    workerId,
    async drain(budgetMs = 30_000) {
      await backfillServerTenants();
      const deadline = Date.now() + budgetMs;
      let batches = 0;
      let exported = 0;
      // Batches in flight side by side, so the next one's reads and writes overlap HubSpot's answer.
      const lane = async () => {
        while (!stopped && Date.now() < deadline) {
          const entries = await db.transaction((tx) => claimDue(tx, { worker: workerId, leaseMs: config.leaseMs, limit: BATCH_SIZE, exportAll }));
          if (entries.length === 0) return;
          await takeTurn(db, entries[0].tenantId);
          batches++;
          exported += await process1(entries);
        }
      };
      await Promise.all(Array.from({ length: PARALLEL_BATCHES }, lane));
      return { batches, exported };
    },
    stop() {
      stopped = true;
    },
    start() {
      stopped = false;
    },
  };
}
