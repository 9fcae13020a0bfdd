import { FleetWatch } from '@fieldsync/protocol/fleet';
import { AppError } from '../../errors.js';
import { compileBodyValidator } from '../../lib/validation.js';
import type { Gateway } from '../../realtime/gateway.js';
import { fleetRoom } from './fleet.notifier.js';

const checkWatch = compileBodyValidator<FleetWatch>(FleetWatch);

/**
 * `fleet:watch` (acknowledged `{watching: true}`): an admin's or manager's socket joins its
 * tenant's fleet room and from then on receives `fleet_update` and `alert`; an agent's gets
 * FORBIDDEN. The room goes with the socket (a revoked credential ends it).
 */
export function mountFleetSocket(deps: { gateway: Gateway }): void {
  deps.gateway.handle('fleet:watch', {
    check: (payload) => checkWatch(payload ?? {}),
    async handle(ctx) {
      if (ctx.principal.role !== 'admin' && ctx.principal.role !== 'manager') {
        throw new AppError('FORBIDDEN', 'The fleet is for admins and managers');
      }
      await deps.gateway.io.of('/').sockets.get(ctx.socketId)?.join(fleetRoom(ctx.principal.tenantId));
      return { watching: true };
    },
  });
}
