import { randomUUID } from 'node:crypto';
import type {
  CallSession,
  CallSessionCreate,
  ContactUpsert,
  ContactUpsertResult,
  Eligibility,
  EligibilityReasonCode,
  EligibleCall,
  OutreachSettings,
  OutreachSettingsPatch,
  Project,
  ProjectContact,
  ProjectCreate,
  ProjectLinkBody,
  TerminalSession,
  TerminalSessionCreate,
} from '@fieldsync/protocol/outreach';
import type { Contact } from '@fieldsync/protocol/contacts';
import type { Db } from '../../db/db.js';
import { AppError, invalid, notFound } from '../../errors.js';
import { isUuid } from '../../lib/values.js';
import { TtlCache } from '../../lib/ttl-cache.js';
import type { PushEngine } from '../../sync/push.js';
import type { Actor, ContactsService } from '../contacts/contacts.service.js';
import { toE164 } from '../contacts/phone.js';
import * as repo from './outreach.repository.js';

export interface OutreachService {
  upsertProject(actor: Actor, input: ProjectCreate): Promise<{ project: Project; created: boolean }>;
  getProject(tenantId: string, projectId: string): Promise<Project>;
  listProjects(tenantId: string, page: number, limit: number): Promise<{ items: Project[]; total: number }>;
  linkContact(actor: Actor, projectId: string, input: ProjectLinkBody): Promise<{ link: ProjectContact; created: boolean }>;
  listLinks(tenantId: string, projectId: string): Promise<ProjectContact[]>;
  upsertContact(actor: Actor, input: ContactUpsert): Promise<ContactUpsertResult>;
  createCallSession(actor: Actor, input: CallSessionCreate): Promise<{ session: CallSession; created: boolean }>;
  getCallSession(tenantId: string, id: string): Promise<CallSession>;
  listCallSessions(tenantId: string, filter: { projectId?: string; contactId?: string; limit?: number }): Promise<CallSession[]>;
  createTerminal(actor: Actor, input: TerminalSessionCreate): Promise<{ terminal: TerminalSession; created: boolean }>;
  getTerminal(tenantId: string, id: string): Promise<TerminalSession>;
  listTerminals(tenantId: string, filter: { active?: boolean; projectId?: string; contactId?: string; limit?: number }): Promise<TerminalSession[]>;
  getSettings(tenantId: string): Promise<OutreachSettings>;
  patchSettings(tenantId: string, patch: OutreachSettingsPatch): Promise<OutreachSettings>;
  /** The tenant's own request budget per minute (null: the server's), read at most every 5 s (at once after a change here). */
  rateLimitOf(tenantId: string): Promise<number | null>;
  eligibleCalls(tenantId: string, query: { projectId?: string; limit?: number }): Promise<EligibleCall[]>;
  eligibility(tenantId: string, projectId: string, contactId: string): Promise<Eligibility>;
}

const REASON_TEXT: Record<EligibilityReasonCode, (f: repo.PairFacts) => string> = {
  project_suppressed: () => 'Calls for this project are suppressed',
  do_not_call: () => 'The contact is marked do-not-call',
  suppressed_for_project: () => 'The contact is suppressed for this project',
  terminal_project: () => 'An active terminal session closes this project, or this contact in it',
  terminal_contact: () => 'An active terminal session closes this contact in every project',
  terminal_global: () => 'An active terminal session stops every call of the organisation',
  cooldown: (f) => `The project is cooling down until ${f.cooldownUntil}`,
  daily_limit: (f) => `${f.dayCalls} calls of this pair in the last 24 hours (limit ${f.daily})`,
  weekly_limit: (f) => `${f.weekCalls} calls of this pair in the last 7 days (limit ${f.weekly})`,
};

/**
 * Outreach over REST (SPEC §9). Writes of projects, links, call and terminal sessions go
 * through the push engine as one-change batches (the collections' rules, versions, audit,
 * the HubSpot outbox, events); the upserts look the record up by its external key first, and
 * a create that loses a race to another is retried as the update it then is.
 */
export function createOutreachService(deps: { db: Db; push: PushEngine; contacts: ContactsService; defaultRegion: string }): OutreachService {
  const { db } = deps;
  /** Tenants' own request budgets, by tenant (other instances' changes show within 5 s). */
  const rateLimits = new TtlCache<string, number | null>(5000, 10_000);

  /** One write through the engine: its ack, or its rejection thrown as the matching error. */
  const write = async (actor: Actor, change: Record<string, unknown>) => {
    const outcome = await deps.push.apply(actor, [{ changeId: randomUUID(), timestamp: Date.now(), ...change }], { receipts: false, force: true });
    const { ack, details } = outcome.results[0];
    if (!ack.success) throw new AppError(ack.code ?? 'VALIDATION_FAILED', ack.error ?? 'The change was rejected', details);
    return ack;
  };

  const requireProject = async (tenantId: string, projectId: string) => {
    const project = await repo.findProject(db, tenantId, projectId);
    if (!project) throw notFound('Project');
    return project;
  };
  const requireContact = async (tenantId: string, contactId: string | null | undefined, field = 'contactId') => {
    if (contactId === undefined || contactId === null) return;
    if (!isUuid(contactId) || !(await repo.contactExists(db, tenantId, contactId.toLowerCase()))) {
      throw new AppError('NOT_FOUND', `Contact not found (${field})`, [{ field, message: 'names no contact of this organisation' }]);
    }
  };

  const upsertProject: OutreachService['upsertProject'] = async (actor, input, retried = false) => {
    const existing = await repo.findProject(db, actor.tenantId, input.projectId);
    const { projectId, ...fields } = input;
    if (existing) {
      await write(actor, { entityType: 'projects', operation: 'update', id: existing.id, data: fields });
      return { project: (await repo.findProject(db, actor.tenantId, projectId))!, created: false };
    }
    try {
      await write(actor, { entityType: 'projects', operation: 'create', data: input });
    } catch (error) {
      // Another request created it meanwhile: this one is its update.
      if (error instanceof AppError && error.code === 'DUPLICATE' && !retried) return (upsertProject as (a: Actor, i: ProjectCreate, r: boolean) => ReturnType<OutreachService['upsertProject']>)(actor, input, true);
      throw error;
    }
    return { project: (await repo.findProject(db, actor.tenantId, projectId))!, created: true };
  };

  const linkContact = async (actor: Actor, projectId: string, input: ProjectLinkBody, retried = false): Promise<{ link: ProjectContact; created: boolean }> => {
    await requireProject(actor.tenantId, projectId);
    await requireContact(actor.tenantId, input.contactId);
    const contactId = input.contactId.toLowerCase();
    const existing = await repo.findLink(db, actor.tenantId, projectId, contactId);
    const { contactId: _c, ...fields } = input;
    if (existing) {
      await write(actor, { entityType: 'projectContacts', operation: 'update', id: existing.id, data: fields });
      return { link: (await repo.findLink(db, actor.tenantId, projectId, contactId))!, created: false };
    }
    try {
      await write(actor, { entityType: 'projectContacts', operation: 'create', data: { ...fields, projectId, contactId } });
    } catch (error) {
      // The pair's unique index refused a link created meanwhile (the engine's VALIDATION_FAILED for a database refusal).
      if (error instanceof AppError && !retried && (await repo.findLink(db, actor.tenantId, projectId, contactId))) return linkContact(actor, projectId, input, true);
      throw error;
    }
    return { link: (await repo.findLink(db, actor.tenantId, projectId, contactId))!, created: true };
  };

  /** Contact upsert: matched by external id, then normalised phone, then lower-cased email (SPEC §9). */
  const upsertContact = async (actor: Actor, input: ContactUpsert, retried = false): Promise<ContactUpsertResult> => {
    const { contactId, ...rest } = input;
    const phone = typeof rest.phonePrimary === 'string' ? toE164(rest.phonePrimary, deps.defaultRegion) : undefined;
    if (typeof rest.phonePrimary === 'string' && !phone) throw invalid('phonePrimary', 'is not a valid phone number');
    const email = typeof rest.email === 'string' ? rest.email.toLowerCase() : undefined;
    const fields = { ...rest, ...(contactId !== undefined ? { externalId: contactId } : {}) };

    let matchedBy: ContactUpsertResult['matchedBy'] = null;
    let id: string | undefined;
    if (contactId) {
      id = await repo.matchContact(db, actor.tenantId, 'externalId', contactId);
      if (id) matchedBy = 'externalId';
    }
    if (!id && phone) {
      id = await repo.matchContact(db, actor.tenantId, 'phone', phone);
      if (id) matchedBy = 'phone';
    }
    if (!id && email) {
      id = await repo.matchContact(db, actor.tenantId, 'email', email);
      if (id) matchedBy = 'email';
    }
    if (id) {
      const contact: Contact = await deps.contacts.update(actor, id, fields);
      return { contact, created: false, matchedBy };
    }
    if (!phone) {
      throw invalid('phonePrimary', email ? 'is required to create a contact (none matched by contactId or email)' : 'a contact needs a phonePrimary or an email');
    }
    try {
      const contact = await deps.contacts.create(actor, { ...fields, phonePrimary: phone } as Parameters<ContactsService['create']>[1]);
      return { contact, created: true, matchedBy: null };
    } catch (error) {
      // A contact with this phone was created meanwhile: match again.
      if (error instanceof AppError && error.code === 'DUPLICATE' && !retried) return upsertContact(actor, input, true);
      throw error;
    }
  };

  return {
    upsertProject: (actor, input) => upsertProject(actor, input),

    getProject: requireProject,

    async listProjects(tenantId, page, limit) {
      return repo.listProjects(db, tenantId, { offset: (page - 1) * limit, limit });
    },

    linkContact: (actor, projectId, input) => linkContact(actor, projectId, input),

    async listLinks(tenantId, projectId) {
      await requireProject(tenantId, projectId);
      return repo.listLinks(db, tenantId, projectId);
    },

    upsertContact: (actor, input) => upsertContact(actor, input),

    async createCallSession(actor, input) {
      await requireProject(actor.tenantId, input.projectId);
      await requireContact(actor.tenantId, input.contactId);
      const ack = await write(actor, { entityType: 'callSessions', operation: 'create', data: input });
      const session = await repo.findCallSession(db, actor.tenantId, ack.serverId!);
      return { session: session!, created: ack.status !== 'duplicate' };
    },

    async getCallSession(tenantId, id) {
      const session = isUuid(id) ? await repo.findCallSession(db, tenantId, id.toLowerCase()) : undefined;
      if (!session) throw notFound('Call session');
      return session;
    },

    listCallSessions: (tenantId, filter) =>
      repo.listCallSessions(db, tenantId, { projectId: filter.projectId, contactId: filter.contactId?.toLowerCase(), limit: filter.limit ?? 100 }),

    async createTerminal(actor, input) {
      if (input.projectId !== undefined && input.projectId !== null) await requireProject(actor.tenantId, input.projectId);
      await requireContact(actor.tenantId, input.contactId);
      const ack = await write(actor, { entityType: 'terminalSessions', operation: 'create', data: input });
      const terminal = await repo.findTerminal(db, actor.tenantId, ack.serverId!);
      return { terminal: terminal!, created: ack.status !== 'duplicate' };
    },

    async getTerminal(tenantId, id) {
      const terminal = isUuid(id) ? await repo.findTerminal(db, tenantId, id.toLowerCase()) : undefined;
      if (!terminal) throw notFound('Terminal session');
      return terminal;
    },

    listTerminals: (tenantId, filter) =>
      repo.listTerminals(db, tenantId, { ...filter, contactId: filter.contactId?.toLowerCase(), limit: filter.limit ?? 100 }),

    getSettings: (tenantId) => repo.getSettings(db, tenantId),

    async patchSettings(tenantId, patch) {
      const saved = await db.transaction(async (tx) => {
        await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`outreach-settings:${tenantId}`]);
        const next = { ...(await repo.getSettings(tx, tenantId)), ...patch };
        await repo.saveSettings(tx, tenantId, next);
        return next;
      });
      rateLimits.set(tenantId, saved.rateLimitPerMinute);
      return saved;
    },

    async rateLimitOf(tenantId) {
      const known = rateLimits.get(tenantId);
      if (known !== undefined) return known;
      const limit = (await repo.getSettings(db, tenantId)).rateLimitPerMinute;
      rateLimits.set(tenantId, limit);
      return limit;
    },

    async eligibleCalls(tenantId, query) {
      if (query.projectId !== undefined) await requireProject(tenantId, query.projectId);
      return repo.eligibleCalls(db, tenantId, query.projectId, query.limit ?? 100);
    },

    async eligibility(tenantId, projectId, contactId) {
      await requireProject(tenantId, projectId);
      await requireContact(tenantId, contactId);
      const facts = await repo.pairFacts(db, tenantId, projectId, contactId.toLowerCase());
      if (!facts) throw notFound('Contact');
      const applies: Record<EligibilityReasonCode, boolean> = {
        project_suppressed: facts.projectSuppressed,
        do_not_call: facts.doNotCall,
        suppressed_for_project: facts.suppressedForProject,
        terminal_project: facts.terminalProject,
        terminal_contact: facts.terminalContact,
        terminal_global: facts.terminalGlobal,
        cooldown: facts.cooldownUntil !== null,
        daily_limit: facts.dayCalls >= facts.daily,
        weekly_limit: facts.weekCalls >= facts.weekly,
      };
      const reasons = (Object.keys(applies) as EligibilityReasonCode[]).filter((code) => applies[code]).map((code) => ({ code, message: REASON_TEXT[code](facts) }));
      return { projectId, contactId: contactId.toLowerCase(), eligible: reasons.length === 0, reasons };
    },
  };
}
