import type { HubspotDeadLetter, HubspotIntegrationPut, HubspotStatus } from '@fieldsync/protocol/outreach';
import type { Db } from '../../../db/db.js';
import { isoSql } from '../../contacts/contacts.collection.js';
import { enqueueAll } from './hubspot.outbox.js';
import { sealToken } from './hubspot.token.js';

export interface HubspotService {
  status(tenantId: string): Promise<HubspotStatus>;
  /** Enables or disables the tenant's export and stores its token (sealed; never returned). Enabling queues what HubSpot lacks. */
  configure(tenantId: string, input: HubspotIntegrationPut): Promise<HubspotStatus>;
  deadLetters(tenantId: string, limit: number): Promise<HubspotDeadLetter[]>;
  /** Puts the tenant's dead letters (all, or those of `ids`) back in the queue with fresh tries. */
  retryDead(tenantId: string, ids?: number[]): Promise<number>;
}

/** The tenant's side of the HubSpot export (SPEC §9): enablement, token, status, dead letters. */
export function createHubspotService(deps: { db: Db; tokenKey: Buffer; serverToken: boolean; onQueued?: () => void }): HubspotService {
  const { db } = deps;

  const status = async (tenantId: string): Promise<HubspotStatus> => {
    const { rows } = await db.query<{
      enabled: boolean | null;
      has_token: boolean;
      exported: string | null;
      retries: string | null;
      last_error: string | null;
      last_success_at: string | null;
      errored_last: boolean;
      backing_off: boolean;
      pending: number;
      failed: number;
      waiting: boolean;
    }>(
      `SELECT i.enabled, i.token_sealed IS NOT NULL AS has_token, i.exported, i.retries, i.last_error,
              ${isoSql('i.last_success_at')} AS last_success_at,
              coalesce(i.last_error_at > coalesce(i.last_success_at, '-infinity'::timestamptz), false) AS errored_last,
              coalesce(i.backoff_until > now(), false) AS backing_off,
              (SELECT count(*)::int FROM hubspot_outbox o WHERE o.tenant_id = $1 AND o.status = 'pending') AS pending,
              (SELECT count(*)::int FROM hubspot_outbox o WHERE o.tenant_id = $1 AND o.status = 'dead') AS failed,
              EXISTS (SELECT 1 FROM hubspot_outbox o WHERE o.tenant_id = $1 AND o.status = 'pending' AND o.attempts > 0 AND o.next_attempt_at > now()) AS waiting
         FROM (SELECT $1::uuid AS tenant_id) t LEFT JOIN hubspot_integrations i ON i.tenant_id = t.tenant_id`,
      [tenantId],
    );
    const r = rows[0];
    const enabled = r.enabled ?? deps.serverToken;
    const tokenSource = r.has_token ? 'tenant' : deps.serverToken ? 'server' : null;
    let state: HubspotStatus['status'] = 'idle';
    if (enabled) {
      if (!tokenSource) state = 'error';
      else if (r.backing_off || r.waiting) state = 'backing_off';
      else if (r.pending > 0) state = 'running';
      else if (r.failed > 0 && r.errored_last) state = 'error';
    }
    return {
      enabled,
      status: state,
      exported: Number(r.exported ?? 0),
      pending: r.pending,
      failed: r.failed,
      retries: Number(r.retries ?? 0),
      lastError: r.last_error ?? (enabled && !tokenSource ? 'No HubSpot access token: PUT one, or set HUBSPOT_ACCESS_TOKEN' : null),
      lastSuccessAt: r.last_success_at,
      hasToken: r.has_token,
      tokenSource,
    };
  };

  return {
    status,

    async configure(tenantId, input) {
      await db.transaction(async (tx) => {
        const sealed = input.accessToken !== undefined ? sealToken(deps.tokenKey, input.accessToken) : null;
        const { rows } = await tx.query<{ backfilled: boolean }>(
          `INSERT INTO hubspot_integrations (tenant_id, enabled, token_sealed) VALUES ($1, $2, $3)
           ON CONFLICT (tenant_id) DO UPDATE SET enabled = EXCLUDED.enabled,
             token_sealed = coalesce(EXCLUDED.token_sealed, hubspot_integrations.token_sealed), backoff_until = NULL, updated_at = now()
           RETURNING backfilled`,
          [tenantId, input.enabled, sealed],
        );
        // Enabled: everything HubSpot does not hold yet is queued (what changed while disabled too).
        if (input.enabled) {
          await enqueueAll(tx, tenantId);
          if (!rows[0].backfilled) await tx.query('UPDATE hubspot_integrations SET backfilled = true WHERE tenant_id = $1', [tenantId]);
        }
      });
      if (input.enabled) deps.onQueued?.();
      return status(tenantId);
    },

    async deadLetters(tenantId, limit) {
      const { rows } = await db.query<HubspotDeadLetter>(
        `SELECT id::int AS id, kind, record_id AS "recordId", attempts, last_error AS "lastError", ${isoSql('updated_at')} AS "updatedAt"
           FROM hubspot_outbox WHERE tenant_id = $1 AND status = 'dead' ORDER BY id DESC LIMIT $2`,
        [tenantId, limit],
      );
      return rows;
    },

    async retryDead(tenantId, ids) {
      return db.transaction(async (tx) => {
        // A dead letter whose object has a pending entry, or a newer dead letter, is superseded by it.
        await tx.query(
          `DELETE FROM hubspot_outbox d WHERE d.tenant_id = $1 AND d.status = 'dead' AND EXISTS (
             SELECT 1 FROM hubspot_outbox n WHERE n.tenant_id = $1 AND n.status = 'dead' AND n.kind = d.kind AND n.record_id = d.record_id AND n.id > d.id)`,
          [tenantId],
        );
        await tx.query(
          `DELETE FROM hubspot_outbox d WHERE d.tenant_id = $1 AND d.status = 'dead' AND EXISTS (
             SELECT 1 FROM hubspot_outbox p WHERE p.tenant_id = $1 AND p.status = 'pending' AND p.kind = d.kind AND p.record_id = d.record_id)`,
          [tenantId],
        );
        const { rowCount } = await tx.query(
          `UPDATE hubspot_outbox SET status = 'pending', attempts = 0, next_attempt_at = now(), lease_until = NULL, leased_by = NULL, updated_at = now()
            WHERE tenant_id = $1 AND status = 'dead' AND ($2::bigint[] IS NULL OR id = ANY($2::bigint[]))`,
          [tenantId, ids ?? null],
        );
        return rowCount;
      }).then((requeued) => {
        if (requeued > 0) deps.onQueued?.();
        return requeued;
      });
    },
  };
}
