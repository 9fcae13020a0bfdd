import { Type, type Static } from 'typebox';

/** Sync counts of one hour (or of a whole range, `totals`): SPEC §11 "Sync analytics". */
export const SyncStats = Type.Object({
  pulls: Type.Integer(),
  pushes: Type.Integer(),
  /** Pulls and pushes answered with an error. */
  failures: Type.Integer(),
  /** Share of pulls and pushes that succeeded (0-1); null without any. */
  successRate: Type.Union([Type.Number(), Type.Null()]),
  /** Changes pushed by devices. */
  changesPushed: Type.Integer(),
  conflicts: Type.Integer(),
  /** Conflicts per pushed change (0-1); null without any pushed change. */
  conflictRate: Type.Union([Type.Number(), Type.Null()]),
  /** Latency percentiles of pulls and pushes in milliseconds (within 10%); null without any. */
  p50Ms: Type.Union([Type.Number(), Type.Null()]),
  p95Ms: Type.Union([Type.Number(), Type.Null()]),
  p99Ms: Type.Union([Type.Number(), Type.Null()]),
  /** Records pulled plus changes accepted. */
  itemsSynced: Type.Integer(),
});
export type SyncStats = Static<typeof SyncStats>;

export const SyncBucket = Type.Object({ start: Type.String({ description: 'the hour, ISO 8601 UTC' }), ...SyncStats.properties });
export type SyncBucket = Static<typeof SyncBucket>;

export const SyncAnalytics = Type.Object({
  from: Type.String(),
  to: Type.String(),
  buckets: Type.Array(SyncBucket),
  totals: SyncStats,
});
export type SyncAnalytics = Static<typeof SyncAnalytics>;

export const SyncAnalyticsQuery = Type.Object(
  {
    from: Type.Optional(Type.String({ format: 'date-time', description: 'default: 24 hours ago' })),
    to: Type.Optional(Type.String({ format: 'date-time', description: 'default: now' })),
  },
  { additionalProperties: false },
);
export type SyncAnalyticsQuery = Static<typeof SyncAnalyticsQuery>;

export const ALERT_TYPES = ['sync_success_rate', 'conflict_rate', 'p95_latency', 'failed_syncs_per_minute', 'device_health', 'device_behind'] as const;
export type AlertType = (typeof ALERT_TYPES)[number];

export const Alert = Type.Object({
  id: Type.String(),
  type: Type.String({ description: ALERT_TYPES.join(', ') }),
  severity: Type.Union([Type.Literal('warning'), Type.Literal('critical')]),
  message: Type.String(),
  deviceId: Type.Optional(Type.String()),
  value: Type.Number(),
  threshold: Type.Number(),
  createdAt: Type.String(),
  resolvedAt: Type.Union([Type.String(), Type.Null()]),
});
export type Alert = Static<typeof Alert>;

export const AlertsQuery = Type.Object(
  {
    status: Type.Optional(Type.Union([Type.Literal('active'), Type.Literal('resolved')], { description: 'default: active' })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 100 })),
  },
  { additionalProperties: false },
);
export type AlertsQuery = Static<typeof AlertsQuery>;

/** Socket event to admins and managers: devices whose state changed (the dashboard refreshes them). */
export const FleetUpdate = Type.Object({ deviceIds: Type.Array(Type.String()), at: Type.String() });
export type FleetUpdate = Static<typeof FleetUpdate>;

/** Socket event `fleet:watch` (admins and managers): receive `fleet_update` and `alert` from now on. */
export const FleetWatch = Type.Object({}, { additionalProperties: false });
export type FleetWatch = Static<typeof FleetWatch>;

/** Socket event to fleet watchers: an alert was raised or resolved. */
export const AlertEvent = Type.Object({ change: Type.Union([Type.Literal('raised'), Type.Literal('resolved')]), alert: Alert });
export type AlertEvent = Static<typeof AlertEvent>;
