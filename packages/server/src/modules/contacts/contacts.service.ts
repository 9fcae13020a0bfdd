import type {
  BulkResult,
  Contact,
  ContactCreate,
  ContactListQuery,
  ContactPatch,
  ContactReplace,
  HistoryEntry,
} from '@fieldsync/protocol/contacts';
import type { Change } from '@fieldsync/protocol/sync';
import type { Db } from '../../db/db.js';
import { AppError, notFound } from '../../errors.js';
import { appendAudit, diffRecords, type AuditEntry } from '../../sync/audit.js';
import type { ChangeFeed } from '../../sync/feed.js';
import { withTenantWrite } from '../../sync/versions.js';
import type { Principal } from '../auth/principal.js';
import { CONTACT_FIELDS, type ContactField } from './contacts.collection.js';
import * as repo from './contacts.repository.js';
import { normaliseContactFields } from './contacts.normalise.js';
import { phoneSearchDigits } from './phone.js';

/** Who wrote a change: stamped on the audit log and used to skip the echo. */
export interface Actor {
  tenantId: string;
  userId?: string;
  agentCode?: string;
  deviceId?: string;
}

export const actorOf = (p: Principal): Actor => ({
  tenantId: p.tenantId,
  userId: p.userId,
  agentCode: p.agentCode,
  deviceId: p.deviceId,
});

/** The outcome of one row of a bulk write. */
export type RowResult = { ok: true; contact: Contact } | { ok: false; error: string; existingId?: string };

export interface ContactsService {
  create(actor: Actor, input: ContactCreate): Promise<Contact>;
  get(tenantId: string, id: string): Promise<Contact>;
  list(tenantId: string, query: ContactListQuery): Promise<{ items: Contact[]; total: number; page: number; limit: number }>;
  update(actor: Actor, id: string, patch: ContactPatch): Promise<Contact>;
  replace(actor: Actor, id: string, input: ContactReplace): Promise<Contact>;
  remove(actor: Actor, id: string): Promise<void>;
  history(tenantId: string, id: string): Promise<HistoryEntry[]>;
  /** Creates many contacts in one transaction; each row succeeds or fails on its own. */
  createMany(actor: Actor, rows: ContactCreate[]): Promise<RowResult[]>;
  bulk(actor: Actor, rows: unknown[], validate: (row: unknown) => string | undefined): Promise<BulkResult>;
  /** Refreshes the planner statistics of contacts (after large imports). */
  refreshStatistics(): Promise<void>;
  /** Live contacts in id order, page by page: the export's source. */
  pages(tenantId: string, pageSize?: number): AsyncGenerator<Contact[]>;
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The files module's check of a file reference (a 400 naming the field when it is no file of the tenant). */
export interface FileReferences {
  assertUsable(tenantId: string, fileId: string, opts?: { userId?: string; field?: string }): Promise<void>;
}

export function createContactsService(deps: { db: Db; feed: ChangeFeed; defaultRegion: string; files?: FileReferences }): ContactsService {
  const { db, feed } = deps;

  /** A photo is an uploaded file of the tenant that the writer may see. */
  const checkPhoto = async (actor: Actor, fields: { photoFileId?: unknown }) => {
    if (typeof fields.photoFileId === 'string') {
      await deps.files?.assertUsable(actor.tenantId, fields.photoFileId, { userId: actor.userId, field: 'photoFileId' });
    }
  };

  const normalise = <T extends Record<string, unknown>>(input: T): T => normaliseContactFields(input, deps.defaultRegion);

  const auditOf = (actor: Actor, action: AuditEntry['action'], before: Contact | undefined, after: Contact): AuditEntry => ({
    tenantId: actor.tenantId,
    collection: 'contacts',
    recordId: after.id,
    version: after.version,
    action,
    changes: action === 'delete' ? { isDeleted: { from: false, to: true } } : diffRecords(before as never, after as never, CONTACT_FIELDS),
    userId: actor.userId,
    agentCode: actor.agentCode,
    deviceId: actor.deviceId,
  });

  const toChange = (c: Contact): Change => ({
    collection: 'contacts',
    op: c.isDeleted ? 'delete' : 'upsert',
    id: c.id,
    version: c.version,
    data: c as unknown as Record<string, unknown>,
  });

  const publish = (
    actor: Actor,
    range: { fromVersion: number; toVersion: number },
    contacts: Contact[],
    event?: 'contact_created' | 'contact_updated' | 'contact_deleted',
  ) => {
    const by = event === 'contact_created' ? 'createdBy' : event === 'contact_deleted' ? 'deletedBy' : 'updatedBy';
    feed.publish({
      tenantId: actor.tenantId,
      ...range,
      changes: contacts.map(toChange),
      origin: { userId: actor.userId, agentCode: actor.agentCode, deviceId: actor.deviceId },
      events: event
        ? contacts.map((contact) => ({
            name: event,
            payload: { contact, version: contact.version, [by]: actor.agentCode ?? null },
          }))
        : undefined,
    });
  };

  const duplicate = (existingId: string) =>
    new AppError('DUPLICATE', 'A contact with this primary phone already exists', [{ field: 'phonePrimary', existingId }]);

  /** Applies a field change to a live contact under the tenant lock. */
  const applyUpdate = async (actor: Actor, id: string, fields: Partial<Record<ContactField, unknown>>, expectedVersion?: number) => {
    if (!UUID_RE.test(id)) throw notFound('Contact');
    const normalised = normalise(fields);
    await checkPhoto(actor, normalised);
    const committed = await withTenantWrite(db, actor.tenantId, async (tx) => {
      const before = await repo.findContact(tx, actor.tenantId, id);
      if (!before) throw notFound('Contact');
      if (expectedVersion !== undefined && expectedVersion !== before.version) {
        throw new AppError('VERSION_MISMATCH', `The contact is at version ${before.version}, not ${expectedVersion}`, [
          { field: 'version', currentVersion: before.version, current: before },
        ]);
      }
      const changed = Object.fromEntries(
        Object.entries(normalised).filter(([field, value]) => (before as Record<string, unknown>)[field] !== value),
      ) as Partial<Record<ContactField, unknown>>;
      if (Object.keys(changed).length === 0) return { contact: before, changed: false };
      if (typeof changed.phonePrimary === 'string') {
        const owner = (await repo.findLiveIdsByPhones(tx, actor.tenantId, [changed.phonePrimary])).get(changed.phonePrimary);
        if (owner && owner !== id) throw duplicate(owner);
      }
      const after = await repo.updateContact(tx, actor.tenantId, id, changed, tx.nextVersion());
      await appendAudit(tx, [auditOf(actor, 'update', before, after)]);
      return { contact: after, changed: true };
    });
    if (committed.result.changed) publish(actor, committed, [committed.result.contact], 'contact_updated');
    return committed.result.contact;
  };

  const createMany = async (actor: Actor, inputs: ContactCreate[]): Promise<RowResult[]> => {
    const results: RowResult[] = new Array(inputs.length);
    const candidates: { index: number; row: ContactCreate }[] = [];
    inputs.forEach((input, index) => {
      try {
        candidates.push({ index, row: normalise(input) });
      } catch (error) {
        results[index] = { ok: false, error: (error as Error).message };
      }
    });
    for (const c of candidates.filter((c) => typeof c.row.photoFileId === 'string')) {
      try {
        await checkPhoto(actor, c.row);
      } catch (error) {
        results[c.index] = { ok: false, error: (error as Error).message };
        candidates.splice(candidates.indexOf(c), 1);
      }
    }
    if (candidates.length === 0) return results;
    const committed = await withTenantWrite(db, actor.tenantId, async (tx) => {
      // Under the tenant lock no other writer can take a phone between this check and the insert.
      const taken = await repo.findLiveIdsByPhones(tx, actor.tenantId, candidates.map((c) => c.row.phonePrimary));
      const seen = new Set<string>();
      const accepted: typeof candidates = [];
      for (const c of candidates) {
        const existing = taken.get(c.row.phonePrimary);
        if (existing) results[c.index] = { ok: false, error: `phonePrimary: already used by contact ${existing}`, existingId: existing };
        else if (seen.has(c.row.phonePrimary)) results[c.index] = { ok: false, error: 'phonePrimary: duplicated in this batch' };
        else {
          seen.add(c.row.phonePrimary);
          accepted.push(c);
        }
      }
      // The audit entries are written by the same statement.
      const created = await repo.insertContacts(
        tx,
        actor.tenantId,
        accepted.map((c) => ({ ...c.row, version: tx.nextVersion(), createdByAgent: actor.agentCode ?? null })),
        actor,
      );
      accepted.forEach((c, i) => (results[c.index] = { ok: true, contact: created[i] }));
      return created;
    });
    publish(actor, committed, committed.result, inputs.length === 1 ? 'contact_created' : undefined);
    return results;
  };

  return {
    async create(actor, input) {
      normalise(input); // throws the 400 with its field details before any write
      await checkPhoto(actor, input);
      const [result] = await createMany(actor, [input]);
      if (result.ok) return result.contact;
      if (result.existingId) throw duplicate(result.existingId);
      throw new AppError('VALIDATION_FAILED', result.error);
    },

    async get(tenantId, id) {
      const contact = UUID_RE.test(id) ? await repo.findContact(db, tenantId, id) : undefined;
      if (!contact) throw notFound('Contact');
      return contact;
    },

    async list(tenantId, query) {
      const page = query.page ?? 1;
      const limit = query.limit ?? 50;
      const filter: repo.ContactFilter = {
        agent: query.agent,
        updatedSince: query.updatedSince,
        includeDeleted: query.includeDeleted,
      };
      const term = query.search?.trim().toLowerCase();
      if (term) {
        filter.text = term;
        filter.phoneDigits = phoneSearchDigits(term, deps.defaultRegion);
      }
      const { items, total } = await repo.listContacts(db, tenantId, filter, { offset: (page - 1) * limit, limit });
      return { items, total, page, limit };
    },

    update: (actor, id, { version, ...fields }) => applyUpdate(actor, id, fields, version),

    replace(actor, id, { version, ...input }) {
      // Every writable field: what the body omits is cleared.
      const fields = Object.fromEntries(
        CONTACT_FIELDS.map((f) => [f, (input as Record<string, unknown>)[f] ?? (f === 'doNotCall' ? false : null)]),
      ) as Partial<Record<ContactField, unknown>>;
      return applyUpdate(actor, id, fields, version);
    },

    async remove(actor, id) {
      if (!UUID_RE.test(id)) throw notFound('Contact');
      const committed = await withTenantWrite(db, actor.tenantId, async (tx) => {
        const before = await repo.findContact(tx, actor.tenantId, id);
        if (!before) throw notFound('Contact');
        const after = await repo.tombstoneContact(tx, actor.tenantId, id, tx.nextVersion());
        await appendAudit(tx, [auditOf(actor, 'delete', before, after)]);
        return after;
      });
      publish(actor, committed, [committed.result], 'contact_deleted');
    },

    async history(tenantId, id) {
      if (!UUID_RE.test(id) || !(await repo.findContact(db, tenantId, id, true))) throw notFound('Contact');
      return repo.contactHistory(db, tenantId, id);
    },

    createMany,

    async bulk(actor, rows, validate) {
      const valid: { index: number; row: ContactCreate }[] = [];
      const results: BulkResult['results'] = new Array(rows.length);
      rows.forEach((row, index) => {
        const error = validate(row);
        if (error) results[index] = { index, success: false, error };
        else valid.push({ index, row: row as ContactCreate });
      });
      const outcomes = await createMany(actor, valid.map((v) => v.row));
      outcomes.forEach((outcome, i) => {
        const index = valid[i].index;
        results[index] = outcome.ok ? { index, success: true, id: outcome.contact.id } : { index, success: false, error: outcome.error };
      });
      const created = results.filter((r) => r.success).length;
      return { results, created, failed: rows.length - created };
    },

    async refreshStatistics() {
      await db.exec('ANALYZE contacts');
    },

    async *pages(tenantId, pageSize = 1000) {
      let after: string | null = null;
      for (;;) {
        const page = await repo.contactsAfter(db, tenantId, after, pageSize);
        if (page.length === 0) return;
        yield page;
        if (page.length < pageSize) return;
        after = page[page.length - 1].id;
      }
    },
  };
}
