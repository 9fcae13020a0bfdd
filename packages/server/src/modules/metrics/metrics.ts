import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { FastifyInstance } from 'fastify';
import type { ChangeResult } from '../../sync/push.js';

/** What the pool gauges read (the Db port's `poolStats`). */
export interface PoolStats {
  total: number;
  idle: number;
  waiting: number;
  queued: number;
}

/**
 * The Prometheus metrics of one app (SPEC §11), on a registry of its own so several apps in
 * one process (tests) never share counters. Names and labels are documented in
 * docs/operations.md; every label value comes from a fixed set (route templates, collection
 * names, strategies), never from ids.
 */
export function createMetrics(deps: { poolStats: () => PoolStats; socketConnections: () => number }) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];

  const httpDuration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'HTTP request duration by method, route template and status code',
    labelNames: ['method', 'route', 'status_code'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers,
  });
  const pulls = new Counter({ name: 'fieldsync_sync_pulls_total', help: 'Delta pulls served (HTTP and sync:pull)', registers });
  const pushes = new Counter({ name: 'fieldsync_sync_pushes_total', help: 'Batched pushes received (HTTP and sync:push)', registers });
  const syncFailures = new Counter({ name: 'fieldsync_sync_failures_total', help: 'Pulls and pushes answered with an error', registers });
  const changesApplied = new Counter({
    name: 'fieldsync_changes_applied_total',
    help: 'Record changes written, by collection (every write path: push, REST, bulk, import, resolutions)',
    labelNames: ['collection'] as const,
    registers,
  });
  const conflicts = new Counter({
    name: 'fieldsync_conflicts_total',
    help: 'Conflicts detected, by collection, strategy and outcome',
    labelNames: ['collection', 'strategy', 'outcome'] as const,
    registers,
  });
  const replays = new Counter({
    name: 'fieldsync_idempotent_replays_total',
    help: 'Answers replayed instead of applied again: kind=request (Idempotency-Key) or change (a re-sent change)',
    labelNames: ['kind'] as const,
    registers,
  });
  replays.inc({ kind: 'request' }, 0);
  replays.inc({ kind: 'change' }, 0);
  new Gauge({
    name: 'fieldsync_socket_connections',
    help: 'Socket.IO connections held by this instance',
    registers,
    collect() {
      this.set(deps.socketConnections());
    },
  });
  const fanout = new Histogram({
    name: 'fieldsync_fanout_latency_seconds',
    help: "Time to hand one commit to this instance's sockets (room selection, encoding, emits)",
    buckets: [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25],
    registers,
  });
  const pool = (name: keyof PoolStats, help: string) =>
    new Gauge({
      name: `fieldsync_db_pool_${name}`,
      help,
      registers,
      collect() {
        this.set(deps.poolStats()[name]);
      },
    });
  pool('total', 'Database connections open (PGlite: 1)');
  pool('idle', 'Database connections idle');
  pool('waiting', 'Requests waiting for a database connection');
  pool('queued', "Tenant writes waiting for their tenant's turn in this instance");

  return {
    registry,
    pulls,
    pushes,
    syncFailures,
    fanout,
    /** Counts the writes and conflicts of one push-engine batch; `collectionOf` maps wire names (aliases) to collections. */
    recordWrites(results: readonly ChangeResult[], collectionOf: (entityType: string) => string) {
      for (const r of results) {
        if (r.conflict) conflicts.inc({ collection: r.conflict.collection, strategy: r.conflict.strategy, outcome: r.conflict.outcome });
        if (!r.ack.success) continue;
        if (r.ack.status === 'duplicate') replays.inc({ kind: 'change' });
        else if (!r.conflict || r.conflict.outcome === 'client_applied' || r.conflict.outcome === 'merged') {
          changesApplied.inc({ collection: collectionOf(r.ack.entityType) });
        }
      }
    },
    /** Times every HTTP request by its route template (an unmatched URL is `unmatched`, never the raw path). */
    register(app: FastifyInstance) {
      app.addHook('onResponse', async (request, reply) => {
        const route = request.routeOptions.url ?? 'unmatched';
        httpDuration.observe({ method: request.method, route, status_code: String(reply.statusCode) }, reply.elapsedTime / 1000);
        if (reply.getHeader('idempotent-replayed') === 'true') replays.inc({ kind: 'request' });
      });
    },
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
