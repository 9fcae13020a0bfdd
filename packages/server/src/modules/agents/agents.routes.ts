import { Type } from 'typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { AgentCode, AgentCreate, AgentPatch, ApiKeyInfo, User } from '@fieldsync/protocol/auth';
import { Ok } from '@fieldsync/protocol/envelope';
import { principalOf } from '../../http/auth.hook.js';
import { responses, secured } from '../../http/schemas.js';
import type { AgentsService } from './agents.service.js';

const CodeParams = Type.Object({ agentCode: AgentCode }, { additionalProperties: false });
const KeyParams = Type.Object({ agentCode: AgentCode, keyId: Type.String({ maxLength: 64 }) }, { additionalProperties: false });
const admin = { auth: { roles: ['admin' as const] } };

/** The admin API for agents and their keys (SPEC §2). */
export function agentsRoutes(deps: { agents: AgentsService }): FastifyPluginAsyncTypebox {
  return async (app) => {
    const tags = ['agents'];
    app.post(
      '/api/agents',
      {
        config: admin,
        schema: {
          tags,
          ...secured,
          summary: 'Create an agent (admins); its API key is shown only here',
          body: AgentCreate,
          response: responses({ 201: Ok(Type.Object({ agent: User, apiKey: Type.String() })) }, { body: true, also: ['DUPLICATE'] }),
        },
      },
      async (request, reply) => {
        const { agent, apiKey } = await deps.agents.create(principalOf(request).tenantId, request.body);
        return reply.status(201).send({ success: true as const, data: { agent, apiKey } });
      },
    );
    app.get(
      '/api/agents',
      { config: { auth: { roles: ['admin', 'manager'] } }, schema: { tags, ...secured, summary: "List the tenant's agents (admins and managers)", response: responses({ 200: Ok(Type.Array(User)) }) } },
      async (request) => ({ success: true as const, data: await deps.agents.list(principalOf(request).tenantId) }),
    );
    app.patch(
      '/api/agents/:agentCode',
      {
        config: admin,
        schema: {
          tags,
          ...secured,
          summary: 'Activate, deactivate or rename an agent (admins)',
          params: CodeParams,
          body: AgentPatch,
          response: responses({ 200: Ok(User) }, { body: true, params: true, also: ['NOT_FOUND'] }),
        },
      },
      async (request) => ({
        success: true as const,
        data: await deps.agents.update(principalOf(request).tenantId, request.params.agentCode, request.body),
      }),
    );
    app.get(
      '/api/agents/:agentCode/keys',
      {
        config: admin,
        schema: {
          tags,
          ...secured,
          summary: "List an agent's API keys, revoked ones included (admins)",
          params: CodeParams,
          response: responses({ 200: Ok(Type.Array(ApiKeyInfo)) }, { params: true, also: ['NOT_FOUND'] }),
        },
      },
      async (request) => ({
        success: true as const,
        data: await deps.agents.listKeys(principalOf(request).tenantId, request.params.agentCode),
      }),
    );
    app.post(
      '/api/agents/:agentCode/keys',
      {
        config: admin,
        schema: {
          tags,
          ...secured,
          summary: 'Issue another API key for an agent (shown only here); older keys keep working until revoked',
          params: CodeParams,
          response: responses({ 201: Ok(Type.Object({ key: ApiKeyInfo, apiKey: Type.String() })) }, { body: true, params: true, also: ['NOT_FOUND'] }),
        },
      },
      async (request, reply) => {
        const created = await deps.agents.createKey(principalOf(request).tenantId, request.params.agentCode);
        return reply.status(201).send({ success: true as const, data: created });
      },
    );
    app.delete(
      '/api/agents/:agentCode/keys/:keyId',
      {
        config: admin,
        schema: {
          tags,
          ...secured,
          summary: 'Revoke an API key (admins); sockets using it are ended',
          params: KeyParams,
          response: responses({ 204: Type.Null() }, { body: true, params: true, also: ['NOT_FOUND'] }),
        },
      },
      async (request, reply) => {
        await deps.agents.revokeKey(principalOf(request).tenantId, request.params.agentCode, request.params.keyId);
        return reply.status(204).send(null);
      },
    );
  };
}
