import { Type } from 'typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Ok, Page } from '@fieldsync/protocol/envelope';
import {
  CallSession,
  CallSessionCreate,
  CallSessionListQuery,
  ContactUpsert,
  ContactUpsertResult,
  Eligibility,
  EligibilityQuery,
  EligibleCall,
  EligibleCallsQuery,
  HubspotDeadLetter,
  HubspotIntegrationPut,
  HubspotRetryBody,
  HubspotStatus,
  OutreachSettings,
  OutreachSettingsPatch,
  Project,
  ProjectContact,
  ProjectCreate,
  ProjectLinkBody,
  ProjectListQuery,
  ProjectParams,
  TerminalListQuery,
  TerminalSession,
  TerminalSessionCreate,
} from '@fieldsync/protocol/outreach';
import { AppError } from '../../errors.js';
import { principalOf } from '../../http/auth.hook.js';
import { IdParams, responses, secured } from '../../http/schemas.js';
import { actorOf } from '../contacts/contacts.service.js';
import type { HubspotService } from './hubspot/hubspot.service.js';
import type { OutreachService } from './outreach.service.js';

const admins = { auth: { roles: ['admin' as const] } };

/** REST for outreach (SPEC §9): projects, links, the contact upsert, call and terminal sessions, settings, eligibility, HubSpot. */
export function outreachRoutes(deps: { outreach: OutreachService; hubspot: HubspotService }): FastifyPluginAsyncTypebox {
  return async (app) => {
    const tags = ['outreach'];
    const { outreach, hubspot } = deps;
    const ok = <T>(data: T) => ({ success: true as const, data });

    app.post(
      '/api/projects',
      {
        schema: {
          tags,
          ...secured,
          summary: 'Create or update a project by its external projectId (201 new, 200 updated)',
          body: ProjectCreate,
          response: responses({ 200: Ok(Project), 201: Ok(Project) }, { body: true }),
        },
      },
      async (request, reply) => {
        const { project, created } = await outreach.upsertProject(actorOf(principalOf(request)), request.body);
        return reply.status(created ? 201 : 200).send(ok(project));
      },
    );

    app.get(
      '/api/projects',
      { schema: { tags, ...secured, summary: 'Page through projects (by projectId)', querystring: ProjectListQuery, response: responses({ 200: Page(Project) }) } },
      async (request) => {
        const page = request.query.page ?? 1;
        const limit = request.query.limit ?? 50;
        const { items, total } = await outreach.listProjects(principalOf(request).tenantId, page, limit);
        return { success: true as const, data: items, pagination: { page, limit, total } };
      },
    );

    app.get(
      '/api/projects/:projectId',
      {
        schema: { tags, ...secured, summary: 'One project by its external projectId', params: ProjectParams, response: responses({ 200: Ok(Project) }, { params: true, also: ['NOT_FOUND'] }) },
      },
      async (request) => ok(await outreach.getProject(principalOf(request).tenantId, request.params.projectId)),
    );

    app.post(
      '/api/projects/:projectId/contacts',
      {
        schema: {
          tags,
          ...secured,
          summary: 'Link a contact to a project (one link per pair: 201 new, 200 updated)',
          params: ProjectParams,
          body: ProjectLinkBody,
          response: responses({ 200: Ok(ProjectContact), 201: Ok(ProjectContact) }, { body: true, params: true, also: ['NOT_FOUND'] }),
        },
      },
      async (request, reply) => {
        const { link, created } = await outreach.linkContact(actorOf(principalOf(request)), request.params.projectId, request.body);
        return reply.status(created ? 201 : 200).send(ok(link));
      },
    );

    app.get(
      '/api/projects/:projectId/contacts',
      {
        schema: {
          tags,
          ...secured,
          summary: "A project's contact links",
          params: ProjectParams,
          response: responses({ 200: Ok(Type.Array(ProjectContact)) }, { params: true, also: ['NOT_FOUND'] }),
        },
      },
      async (request) => ok(await outreach.listLinks(principalOf(request).tenantId, request.params.projectId)),
    );

    app.post(
      '/api/contacts/upsert',
      {
        schema: {
          tags,
          ...secured,
          summary: 'Create or update a contact matched by external contactId, then normalised phone, then email (201 created, 200 matched)',
          body: ContactUpsert,
          response: responses({ 200: Ok(ContactUpsertResult), 201: Ok(ContactUpsertResult) }, { body: true, also: ['DUPLICATE'] }),
        },
      },
      async (request, reply) => {
        const result = await outreach.upsertContact(actorOf(principalOf(request)), request.body);
        return reply.status(result.created ? 201 : 200).send(ok(result));
      },
    );

    app.post(
      '/api/call-sessions',
      {
        schema: {
          tags,
          ...secured,
          summary: 'Append a call attempt (idempotent on callSessionId: a re-send answers the stored session, 200)',
          body: CallSessionCreate,
          response: responses({ 200: Ok(CallSession), 201: Ok(CallSession) }, { body: true, also: ['NOT_FOUND'] }),
        },
      },
      async (request, reply) => {
        const { session, created } = await outreach.createCallSession(actorOf(principalOf(request)), request.body);
        return reply.status(created ? 201 : 200).send(ok(session));
      },
    );

    app.get(
      '/api/call-sessions',
      {
        schema: { tags, ...secured, summary: 'Call sessions, latest first', querystring: CallSessionListQuery, response: responses({ 200: Ok(Type.Array(CallSession)) }) },
      },
      async (request) => ok(await outreach.listCallSessions(principalOf(request).tenantId, request.query)),
    );

    app.get(
      '/api/call-sessions/:id',
      { schema: { tags, ...secured, summary: 'One call session', params: IdParams, response: responses({ 200: Ok(CallSession) }, { params: true, also: ['NOT_FOUND'] }) } },
      async (request) => ok(await outreach.getCallSession(principalOf(request).tenantId, request.params.id)),
    );

    app.post(
      '/api/terminal-sessions',
      {
        schema: {
          tags,
          ...secured,
          summary: 'Record a terminal state: scope project (projectId, optionally one contactId), contact (contactId) or global; idempotent on terminalId',
          body: TerminalSessionCreate,
          response: responses({ 200: Ok(TerminalSession), 201: Ok(TerminalSession) }, { body: true, also: ['NOT_FOUND'] }),
        },
      },
      async (request, reply) => {
        const { terminal, created } = await outreach.createTerminal(actorOf(principalOf(request)), request.body);
        return reply.status(created ? 201 : 200).send(ok(terminal));
      },
    );

    app.get(
      '/api/terminal-sessions',
      {
        schema: {
          tags,
          ...secured,
          summary: 'Terminal sessions, latest first (active=true: those in force)',
          querystring: TerminalListQuery,
          response: responses({ 200: Ok(Type.Array(TerminalSession)) }),
        },
      },
      async (request) => ok(await outreach.listTerminals(principalOf(request).tenantId, request.query)),
    );

    app.get(
      '/api/terminal-sessions/:id',
      { schema: { tags, ...secured, summary: 'One terminal session', params: IdParams, response: responses({ 200: Ok(TerminalSession) }, { params: true, also: ['NOT_FOUND'] }) } },
      async (request) => ok(await outreach.getTerminal(principalOf(request).tenantId, request.params.id)),
    );

    // Append only: call and terminal sessions are never changed or removed.
    for (const path of ['/api/call-sessions/:id', '/api/terminal-sessions/:id']) {
      for (const method of ['PATCH', 'PUT', 'DELETE'] as const) {
        app.route({
          method,
          url: path,
          schema: { hide: true, params: IdParams },
          handler: async (_request, reply) => {
            reply.header('allow', 'GET');
            throw new AppError('METHOD_NOT_ALLOWED', `${path.split('/')[2]} are append only: never updated or deleted`);
          },
        });
      }
    }

    app.get(
      '/api/settings',
      { schema: { tags, ...secured, summary: "The organisation's settings: call limits and its request budget", response: responses({ 200: Ok(OutreachSettings) }) } },
      async (request) => ok(await outreach.getSettings(principalOf(request).tenantId)),
    );

    app.patch(
      '/api/settings',
      {
        config: admins,
        schema: {
          tags,
          ...secured,
          summary:
            'Change the settings: callDailyLimit (3), callWeeklyLimit (10), callCooldownHours (24), rateLimitPerMinute (null: the server\'s; lower only); admins',
          body: OutreachSettingsPatch,
          response: responses({ 200: Ok(OutreachSettings) }, { body: true }),
        },
      },
      async (request) => ok(await outreach.patchSettings(principalOf(request).tenantId, request.body)),
    );

    app.get(
      '/api/eligible-calls',
      {
        schema: {
          tags,
          ...secured,
          summary: 'Callable (project, contact) pairs now, of one project or the whole organisation',
          querystring: EligibleCallsQuery,
          response: responses({ 200: Ok(Type.Array(EligibleCall)) }, { also: ['NOT_FOUND'] }),
        },
      },
      async (request) => ok(await outreach.eligibleCalls(principalOf(request).tenantId, request.query)),
    );

    app.get(
      '/api/eligibility',
      {
        schema: {
          tags,
          ...secured,
          summary: 'Whether a pair may be called now, with every reason that forbids it',
          querystring: EligibilityQuery,
          response: responses({ 200: Ok(Eligibility) }, { also: ['NOT_FOUND'] }),
        },
      },
      async (request) => ok(await outreach.eligibility(principalOf(request).tenantId, request.query.projectId, request.query.contactId)),
    );

    const integrationTags = ['integrations'];
    app.get(
      '/api/integrations/hubspot',
      {
        config: admins,
        schema: { tags: integrationTags, ...secured, summary: 'The HubSpot export: enablement and progress (admins; the token is never returned)', response: responses({ 200: Ok(HubspotStatus) }) },
      },
      async (request) => ok(await hubspot.status(principalOf(request).tenantId)),
    );

    app.put(
      '/api/integrations/hubspot',
      {
        config: admins,
        schema: {
          tags: integrationTags,
          ...secured,
          summary: "Enable or disable the organisation's HubSpot export and store its private-app token (admins)",
          body: HubspotIntegrationPut,
          response: responses({ 200: Ok(HubspotStatus) }, { body: true }),
        },
      },
      async (request) => ok(await hubspot.configure(principalOf(request).tenantId, request.body)),
    );

    app.get(
      '/api/integrations/hubspot/dead-letters',
      {
        config: admins,
        schema: {
          tags: integrationTags,
          ...secured,
          summary: 'Export entries that failed every try, latest first (admins)',
          querystring: Type.Object({ limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })) }, { additionalProperties: false }),
          response: responses({ 200: Ok(Type.Array(HubspotDeadLetter)) }),
        },
      },
      async (request) => ok(await hubspot.deadLetters(principalOf(request).tenantId, request.query.limit ?? 100)),
    );

    app.post(
      '/api/integrations/hubspot/retry',
      {
        config: admins,
        schema: {
          tags: integrationTags,
          ...secured,
          summary: 'Queue dead letters again with fresh tries: {all: true} or {ids: [...]} (admins)',
          querystring: Type.Object({}, { additionalProperties: false }),
          body: HubspotRetryBody,
          response: responses({ 200: Ok(Type.Object({ requeued: Type.Integer() })) }, { body: true }),
        },
      },
      async (request) => {
        const ids = 'ids' in request.body ? request.body.ids : undefined;
        return ok({ requeued: await hubspot.retryDead(principalOf(request).tenantId, ids) });
      },
    );
  };
}
