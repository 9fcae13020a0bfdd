import { Type, type Static } from 'typebox';

export const Device = Type.Object({
  deviceId: Type.String(),
  userId: Type.Union([Type.String(), Type.Null()]),
  agentCode: Type.Union([Type.String(), Type.Null()]),
  platform: Type.Union([Type.String(), Type.Null()]),
  appVersion: Type.Union([Type.String(), Type.Null()]),
  osVersion: Type.Union([Type.String(), Type.Null()]),
  networkType: Type.Union([Type.String(), Type.Null()]),
  battery: Type.Union([Type.Number(), Type.Null()]),
  lastSyncVersion: Type.Integer(),
  lastSyncAt: Type.Union([Type.String(), Type.Null()]),
  lastSeenAt: Type.Union([Type.String(), Type.Null()]),
  syncStatus: Type.String(),
  changesCount: Type.Integer(),
  syncCount: Type.Integer(),
  /** Syncs that failed (counted in `syncCount`). */
  errorCount: Type.Integer(),
  versionsBehind: Type.Integer(),
  online: Type.Boolean(),
  /** 0-100 from success rate, versions behind and time since last seen (docs/operations.md). */
  healthScore: Type.Integer({ minimum: 0, maximum: 100 }),
});
export type Device = Static<typeof Device>;

/** Device facts a client reports in headers or the socket heartbeat. */
export const Heartbeat = Type.Object(
  {
    networkType: Type.Optional(Type.String({ maxLength: 32 })),
    appVersion: Type.Optional(Type.String({ maxLength: 64 })),
    osVersion: Type.Optional(Type.String({ maxLength: 64 })),
    platform: Type.Optional(Type.String({ maxLength: 32 })),
    battery: Type.Optional(Type.Number({ minimum: 0, maximum: 100 })),
  },
  { additionalProperties: false },
);
export type Heartbeat = Static<typeof Heartbeat>;
