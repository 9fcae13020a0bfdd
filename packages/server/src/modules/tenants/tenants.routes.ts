import { Type } from 'typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Tenant, TenantCreate } from '@fieldsync/protocol/auth';
import { Ok } from '@fieldsync/protocol/envelope';
import { principalOf } from '../../http/auth.hook.js';
import { responses, secured } from '../../http/schemas.js';
import { forbidden } from '../../errors.js';
import type { TenantsService } from './tenants.service.js';

/** `POST /api/tenants`: only an admin of tenant `default` may create tenants. */
export function tenantsRoutes(deps: { tenants: TenantsService; defaultTenantId: () => Promise<string | undefined> }): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.post(
      '/api/tenants',
      {
        config: { auth: { roles: ['admin'] } },
        schema: {
          tags: ['tenants'],
          ...secured,
          summary: 'Create a tenant with its own admin, whose API key is shown only here (admins of tenant `default`)',
          body: TenantCreate,
          response: responses({ 201: Ok(Type.Object({ tenant: Tenant, apiKey: Type.String() })) }, { body: true, also: ['DUPLICATE'] }),
        },
      },
      async (request, reply) => {
        if (principalOf(request).tenantId !== (await deps.defaultTenantId())) throw forbidden('Only admins of the default tenant create tenants');
        const { tenant, apiKey } = await deps.tenants.create(request.body);
        return reply.status(201).send({ success: true as const, data: { tenant, apiKey } });
      },
    );
  };
}
