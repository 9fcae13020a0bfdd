import type { Client } from '@hubspot/api-client';

/** The property every exported object carries, unique in HubSpot: our record id. Upserts match on it. */
export const ID_PROPERTY = 'fieldsync_id';

export type ObjectType = 'contacts' | 'deals' | 'notes';

/** One object of a batch upsert: our id and its properties (HubSpot takes strings). */
export interface UpsertInput {
  fieldsyncId: string;
  properties: Record<string, string>;
}

/** A HubSpot answer the worker acts on: rate limited, failed (retry), or refused. */
export class HubspotError extends Error {
  constructor(
    message: string,
    /** HTTP status, 0 when no answer came (network, timeout). */
    readonly status: number,
    /** Retry-After in ms, when HubSpot sent one. */
    readonly retryAfterMs: number | undefined,
  ) {
    super(message);
    this.name = 'HubspotError';
  }
}

/** Retry-After as ms: delta-seconds or an HTTP date; capped at an hour. */
export function retryAfterMs(value: unknown, now = Date.now()): number | undefined {
  if (typeof value !== 'string' || value.trim() === '') return undefined;
  const seconds = Number(value);
  const ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(value) - now;
  return Number.isFinite(ms) ? Math.min(Math.max(ms, 0), 3_600_000) : undefined;
}

/** The SDK's errors (ApiException: code, headers, body), a timeout or a network failure, as a HubspotError. */
function asHubspotError(error: unknown): HubspotError {
  if (error instanceof HubspotError) return error;
  const e = error as { code?: unknown; headers?: Record<string, string>; body?: unknown; message?: string };
  const status = typeof e.code === 'number' ? e.code : 0;
  const body = e.body as { message?: unknown; category?: unknown } | undefined;
  const detail = typeof body?.message === 'string' ? body.message : (e.message ?? String(error));
  return new HubspotError(status ? `HubSpot answered ${status}: ${detail.slice(0, 300)}` : `HubSpot unreachable: ${detail.slice(0, 300)}`, status, retryAfterMs(e.headers?.['retry-after']));
}

const withTimeout = async <T>(promise: Promise<T>, ms: number): Promise<T> => {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new HubspotError(`HubSpot did not answer within ${ms} ms`, 0, undefined)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
};

/** The calls the export makes, over the official SDK (`@hubspot/api-client`). */
export interface HubspotApi {
  /** Batch upsert (CRM v3, up to 100) matched on `fieldsync_id`: our id -> HubSpot id, and the ids HubSpot refused. */
  upsert(type: ObjectType, inputs: UpsertInput[]): Promise<{ ids: Map<string, string>; refused: Map<string, string> }>;
  /** Batch association create (CRM v3): idempotent in HubSpot. */
  associate(from: ObjectType, to: ObjectType, type: string, pairs: { from: string; to: string }[]): Promise<void>;
}

/**
 * A HubSpot client for one token. The SDK's own retries are off: the worker retries through the
 * outbox, honouring Retry-After, so a retry survives a restart and is counted.
 */
export function createHubspotApi(opts: { accessToken: string; baseUrl: string; timeoutMs: number; requestsPerSecond: number }): HubspotApi {
  // The SDK is large (about 15 MB of memory): loaded with the first export, not at start-up.
  let client: Promise<Client> | undefined;
  const sdk = () =>
    (client ??= import('@hubspot/api-client').then(
      ({ Client: Sdk }) =>
        new Sdk({
          accessToken: opts.accessToken,
          basePath: opts.baseUrl,
          numberOfApiCallRetries: 0,
          ...(opts.requestsPerSecond > 0 ? { limiterOptions: { minTime: Math.ceil(1000 / opts.requestsPerSecond), maxConcurrent: 2 } } : {}),
        }),
    ));
  const batchApi = async (type: ObjectType) => {
    const c = await sdk();
    return type === 'contacts' ? c.crm.contacts.batchApi : type === 'deals' ? c.crm.deals.batchApi : c.crm.objects.notes.batchApi;
  };

  const call = async <T>(fn: () => Promise<T>): Promise<T> => {
    try {
      return await withTimeout(fn(), opts.timeoutMs);
    } catch (error) {
      throw asHubspotError(error);
    }
  };

  return {
    async upsert(type, inputs) {
      const api = await batchApi(type);
      const answer = await call(() =>
        api.upsert({ inputs: inputs.map((i) => ({ idProperty: ID_PROPERTY, id: i.fieldsyncId, properties: { ...i.properties, [ID_PROPERTY]: i.fieldsyncId } })) }),
      );
      const ids = new Map<string, string>();
      for (const result of answer.results ?? []) {
        const ours = result.properties?.[ID_PROPERTY];
        if (ours) ids.set(ours, result.id);
      }
      // A 207 lists the inputs it refused; whatever has no result was not written.
      const refused = new Map<string, string>();
      const errors = (answer as { errors?: { message?: string; context?: Record<string, string[]> }[] }).errors ?? [];
      for (const e of errors) for (const id of e.context?.ids ?? []) refused.set(id, e.message ?? 'refused');
      for (const i of inputs) if (!ids.has(i.fieldsyncId) && !refused.has(i.fieldsyncId)) refused.set(i.fieldsyncId, 'HubSpot returned no result for it');
      return { ids, refused };
    },

    async associate(from, to, type, pairs) {
      if (pairs.length === 0) return;
      const c = await sdk();
      await call(() => c.crm.associations.batchApi.create(from, to, { inputs: pairs.map((p) => ({ _from: { id: p.from }, to: { id: p.to }, type })) }));
    },
  };
}
