import { Type } from 'typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Device } from '@fieldsync/protocol/devices';
import { Ok } from '@fieldsync/protocol/envelope';
import { principalOf } from '../../http/auth.hook.js';
import { responses, secured } from '../../http/schemas.js';
import type { DevicesService } from './devices.service.js';

/** Fleet state: devices, one device, devices lagging behind. */
export function devicesRoutes(deps: { devices: DevicesService }): FastifyPluginAsyncTypebox {
  return async (app) => {
    const tags = ['devices'];
    const config = { auth: { roles: ['admin' as const, 'manager' as const] } };
    app.get(
      '/api/devices',
      { config, schema: { tags, ...secured, summary: "The tenant's devices with their sync state and health", response: responses({ 200: Ok(Type.Array(Device)) }) } },
      async (request) => ({ success: true as const, data: await deps.devices.list(principalOf(request).tenantId) }),
    );
    app.get(
      '/api/devices/outdated',
      {
        config,
        schema: {
          tags,
          ...secured,
          summary: 'Devices more than `threshold` versions behind the tenant',
          querystring: Type.Object({ threshold: Type.Optional(Type.Integer({ minimum: 0, maximum: 1e12, default: 100 })) }, { additionalProperties: false }),
          response: responses({ 200: Ok(Type.Array(Device)) }),
        },
      },
      async (request) => ({
        success: true as const,
        data: await deps.devices.outdated(principalOf(request).tenantId, request.query.threshold ?? 100),
      }),
    );
    app.get(
      '/api/devices/:deviceId',
      {
        config,
        schema: {
          tags,
          ...secured,
          summary: 'One device',
          params: Type.Object({ deviceId: Type.String({ maxLength: 128 }) }, { additionalProperties: false }),
          response: responses({ 200: Ok(Device) }, { params: true, also: ['NOT_FOUND'] }),
        },
      },
      async (request) => ({ success: true as const, data: await deps.devices.get(principalOf(request).tenantId, request.params.deviceId) }),
    );
  };
}
