import type {
  BulkResult,
  Contact,
  ContactCreate,
  ContactListQuery,
  ContactPatch,
  ContactReplace,
  HistoryEntry,
} from '@fieldsync/protocol/contacts';
import { randomUUID } from 'node:crypto';
import type { Db } from '../../db/db.js';
import { AppError, notFound } from '../../errors.js';
import { isUuid } from '../../lib/values.js';
import type { PushCaller, PushEngine, PushOptions } from '../../sync/push.js';
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
export type RowResult = { ok: true; id: string } | { ok: false; error: string; existingId?: string };

export interface ContactsService {
  create(actor: Actor, input: ContactCreate): Promise<Contact>;
  get(tenantId: string, id: string): Promise<Contact>;
  list(tenantId: string, query: ContactListQuery): Promise<{ items: Contact[]; total: number; page: number; limit: number }>;
  update(actor: Actor, id: string, patch: ContactPatch): Promise<Contact>;
  replace(actor: Actor, id: string, input: ContactReplace): Promise<Contact>;
  remove(actor: Actor, id: string): Promise<void>;
  history(tenantId: string, id: string): Promise<HistoryEntry[]>;
  /** Creates many contacts in one batch of the push engine; each row succeeds or fails on its own. */
  createMany(actor: Actor, rows: ContactCreate[]): Promise<RowResult[]>;
  /**
   * `createMany` in two steps: checks the rows now, writes them on `commit` (an import checks
   * its next chunk while the one before commits).
   */
  prepareMany(actor: Actor, rows: ContactCreate[]): Promise<{ commit(): Promise<RowResult[]> }>;
  bulk(actor: Actor, rows: unknown[], validate: (row: unknown) => string | undefined): Promise<BulkResult>;
  /** Refreshes the planner statistics of contacts (after large imports). */
  refreshStatistics(): Promise<void>;
  /** Live contacts in id order, page by page: the export's source. */
  pages(tenantId: string, pageSize?: number): AsyncGenerator<Contact[]>;
}

/**
 * Contacts over REST (SPEC §5). Every write goes through the push engine, as one change or as
 * one large batch (bulk, import), so REST, sync and import share one write path: validation,
 * normalisation, the unique primary phone, versions, audit, events. REST edits are the
 * server's own: they apply whatever the conflict policy (`force`), at their receipt time.
 */
export function createContactsService(deps: { db: Db; push: PushEngine; defaultRegion: string }): ContactsService {
  const { db } = deps;

  const normalise = <T extends Record<string, unknown>>(input: T): T => normaliseContactFields(input, deps.defaultRegion);

  const callerOf = (actor: Actor): PushCaller => ({ ...actor });

  /** One REST write as a one-change batch; its rejection is thrown as the matching error. */
  const writeOne = async (actor: Actor, change: Record<string, unknown>, opts: PushOptions = {}): Promise<string> => {
    const outcome = await deps.push.apply(callerOf(actor), [{ changeId: randomUUID(), entityType: 'contacts', timestamp: Date.now(), ...change }], {
      receipts: false,
      ...opts,
    });
    const { ack, details } = outcome.results[0];
    if (ack.success) return ack.serverId!;
    if (ack.code === 'DUPLICATE') throw duplicate(String(details?.[0]?.existingId ?? ''));
    throw new AppError(ack.code ?? 'VALIDATION_FAILED', ack.error ?? 'The change was rejected', details);
  };

  const duplicate = (existingId: string) =>
    new AppError('DUPLICATE', 'A contact with this primary phone already exists', [{ field: 'phonePrimary', existingId }]);

  const get = async (tenantId: string, id: string) => {
    const contact = isUuid(id) ? await repo.findContact(db, tenantId, id) : undefined;
    if (!contact) throw notFound('Contact');
    return contact;
  };

  /** Applies a field change to a live contact; fields set to the values they have are left out. */
  const applyUpdate = async (actor: Actor, id: string, fields: Partial<Record<ContactField, unknown>>, expectedVersion?: number) => {
    const before = await get(actor.tenantId, id);
    const normalised = normalise(fields); // the 400 with its field details, before any write
    const changed = Object.fromEntries(Object.entries(normalised).filter(([field, value]) => (before as Record<string, unknown>)[field] !== value));
    if (Object.keys(changed).length === 0) {
      if (expectedVersion !== undefined && expectedVersion !== before.version) await writeOne(actor, { operation: 'update', id, data: {} }, { expectedVersion, force: true });
      return before;
    }
    await writeOne(actor, { operation: 'update', id, data: changed }, { expectedVersion, force: true });
    return get(actor.tenantId, id);
  };

  const prepareMany = async (actor: Actor, inputs: ContactCreate[]): Promise<{ commit(): Promise<RowResult[]> }> => {
    if (inputs.length === 0) return { commit: async () => [] };
    const prepared = await deps.push.prepare(
      callerOf(actor),
      inputs.map((data) => ({ changeId: randomUUID(), entityType: 'contacts', operation: 'create', timestamp: Date.now(), data })),
      { receipts: false },
    );
    return {
      async commit() {
        const outcome = await prepared.commit();
        return outcome.results.map(({ ack, details }) =>
          ack.success
            ? { ok: true as const, id: ack.serverId! }
            : { ok: false as const, error: ack.error ?? 'Rejected', existingId: details?.[0]?.existingId as string | undefined },
        );
      },
    };
  };

  const createMany = async (actor: Actor, inputs: ContactCreate[]): Promise<RowResult[]> => (await prepareMany(actor, inputs)).commit();

  return {
    async create(actor, input) {
      normalise(input); // throws the 400 with its field details before any write
      const id = await writeOne(actor, { operation: 'create', data: input });
      return get(actor.tenantId, id);
    },

    get,

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
      await get(actor.tenantId, id); // a deleted contact is a 404, not a second delete
      await writeOne(actor, { operation: 'delete', id }, { force: true });
    },

    async history(tenantId, id) {
      if (!isUuid(id) || !(await repo.findContact(db, tenantId, id, true))) throw notFound('Contact');
      return repo.contactHistory(db, tenantId, id);
    },

    createMany,
    prepareMany,

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
        results[index] = outcome.ok ? { index, success: true, id: outcome.id } : { index, success: false, error: outcome.error };
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
