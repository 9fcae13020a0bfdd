import { Type } from 'typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { AgentCode, AgentCreate, AgentPatch, ApiKeyInfo, User } from '@fieldsync/protocol/auth';
import { Ok } from '@fieldsync/protocol/envelope';
import { principalOf } from '../../http/auth.hook.js';
import { secured, withErrors } from '../../http/schemas.js';
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
        schema: { tags, ...secured, body: AgentCreate, response: withErrors({ 201: Ok(Type.Object({ agent: User, apiKey: Type.String() })) }) },
      },
      async (request, reply) => {
        const { agent, apiKey } = await deps.agents.create(principalOf(request).tenantId, request.body);
        return reply.status(201).send({ success: true as const, data: { agent, apiKey } });
      },
    );
    app.get(
      '/api/agents',
      { config: { auth: { roles: ['admin', 'manager'] } }, schema: { tags, ...secured, response: withErrors({ 200: Ok(Type.Array(User)) }) } },
      async (request) => ({ success: true as const, data: await deps.agents.list(principalOf(request).tenantId) }),
    );
    app.patch(
      '/api/agents/:agentCode',
      { config: admin, schema: { tags, ...secured, params: CodeParams, body: AgentPatch, response: withErrors({ 200: Ok(User) }) } },
      async (request) => ({
        success: true as const,
        data: await deps.agents.update(principalOf(request).tenantId, request.params.agentCode, request.body),
      }),
    );
    app.get(
      '/api/agents/:agentCode/keys',
      { config: admin, schema: { tags, ...secured, params: CodeParams, response: withErrors({ 200: Ok(Type.Array(ApiKeyInfo)) }) } },
      async (request) => ({
        success: true as const,
        data: await deps.agents.listKeys(principalOf(request).tenantId, request.params.agentCode),
      }),
    );
    app.post(
      '/api/agents/:agentCode/keys',
      {
        config: admin,
        schema: { tags, ...secured, params: CodeParams, response: withErrors({ 201: Ok(Type.Object({ key: ApiKeyInfo, apiKey: Type.String() })) }) },
      },
      async (request, reply) => {
        const created = await deps.agents.createKey(principalOf(request).tenantId, request.params.agentCode);
        return reply.status(201).send({ success: true as const, data: created });
      },
    );
    app.delete(
      '/api/agents/:agentCode/keys/:keyId',
      { config: admin, schema: { tags, ...secured, params: KeyParams, response: withErrors({ 204: Type.Null() }) } },
      async (request, reply) => {
        await deps.agents.revokeKey(principalOf(request).tenantId, request.params.agentCode, request.params.keyId);
        return reply.status(204).send(null);
      },
    );
  };
}
