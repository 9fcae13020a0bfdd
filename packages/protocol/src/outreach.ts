import { Type, type Static } from 'typebox';
import { ContactCreate } from './contacts.js';
import { Text, Uuid } from './envelope.js';

/*
 * Outreach (SPEC §9): projects, project-contact links, call sessions, terminal sessions, the
 * tenant's call limits, eligibility and the HubSpot export. `projectId` is always the project's
 * external id; `contactId` is our contact id (except in the contact upsert, where it is the
 * contact's external id).
 */

const Nullable = <T extends ReturnType<typeof Type.String>>(t: T) => Type.Union([t, Type.Null()]);
const DateTime = Type.String({ format: 'date-time', maxLength: 64 });
/** An external id: not blank, no NUL bytes, no surrounding spaces. */
const ExternalId = Type.String({ minLength: 1, maxLength: 200, pattern: '^[^\\s\\u0000](?:[^\\u0000]*[^\\s\\u0000])?$' });
/** A required name or label: not blank, no NUL bytes. */
const Name = (maxLength: number) => Type.String({ minLength: 1, maxLength, pattern: '^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$' });
/** A record of the same device named by its local id (push only). */
const LocalId = Type.String({ minLength: 1, maxLength: 128 });
const LocalRef = Type.Optional(Type.Union([LocalId, Type.Null()]));

const Base = {
  id: Type.String(),
  version: Type.Integer(),
  isDeleted: Type.Boolean(),
  createdAt: Type.String(),
  updatedAt: Type.String(),
};

// Projects.

/** Free-form project properties (exported to HubSpot as deal properties): flat, small. */
export const ProjectProperties = Type.Record(
  Type.String({ minLength: 1, maxLength: 100, pattern: '^[A-Za-z0-9_]+$' }),
  Type.Union([Text(2000), Type.Number(), Type.Boolean(), Type.Null()]),
  { maxProperties: 100 },
);

export const ProjectFields = {
  projectId: ExternalId,
  name: Name(300),
  status: Type.Optional(Name(50)),
  callSuppressed: Type.Optional(Type.Boolean()),
  nextCallEligibleAt: Type.Optional(Type.Union([DateTime, Type.Null()])),
  properties: Type.Optional(ProjectProperties),
};

/** `POST /api/projects` and a push create: upserts by `projectId` (REST). */
export const ProjectCreate = Type.Object(ProjectFields, { additionalProperties: false });
export type ProjectCreate = Static<typeof ProjectCreate>;
/** An update: any field but the project's external id. */
export const ProjectUpdate = Type.Partial(Type.Omit(ProjectCreate, ['projectId']), { additionalProperties: false });
export type ProjectUpdate = Static<typeof ProjectUpdate>;

export const Project = Type.Object({
  ...Base,
  projectId: Type.String(),
  name: Type.String(),
  status: Type.String(),
  callSuppressed: Type.Boolean(),
  nextCallEligibleAt: Type.Union([Type.String(), Type.Null()]),
  properties: Type.Record(Type.String(), Type.Unknown()),
});
export type Project = Static<typeof Project>;

export const ProjectParams = Type.Object({ projectId: Type.String({ minLength: 1, maxLength: 200 }) }, { additionalProperties: false });
export const ProjectListQuery = Type.Object(
  {
    page: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000, default: 1 })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 50 })),
  },
  { additionalProperties: false },
);
export type ProjectListQuery = Static<typeof ProjectListQuery>;

// Project-contact links.

export const ProjectContactCreate = Type.Object(
  {
    projectId: ExternalId,
    contactId: Uuid,
    role: Type.Optional(Nullable(Text(100))),
    suppressForProject: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type ProjectContactCreate = Static<typeof ProjectContactCreate>;
export const ProjectContactUpdate = Type.Partial(Type.Omit(ProjectContactCreate, ['projectId', 'contactId']), { additionalProperties: false });
export type ProjectContactUpdate = Static<typeof ProjectContactUpdate>;
/** A link create in a push: the contact by `contactId`, or by `contactLocalId` when the device created it. */
export const ProjectContactPushCreate = Type.Union([
  Type.Object({ ...ProjectContactCreate.properties, contactLocalId: LocalRef }, { additionalProperties: false }),
  Type.Object({ ...Type.Omit(ProjectContactCreate, ['contactId']).properties, contactLocalId: LocalId }, { additionalProperties: false }),
]);

/** `POST /api/projects/:projectId/contacts`: links a contact (again: updates the link). */
export const ProjectLinkBody = Type.Object(
  { contactId: Uuid, role: Type.Optional(Nullable(Text(100))), suppressForProject: Type.Optional(Type.Boolean()) },
  { additionalProperties: false },
);
export type ProjectLinkBody = Static<typeof ProjectLinkBody>;

export const ProjectContact = Type.Object({
  ...Base,
  projectId: Type.String(),
  contactId: Type.String(),
  role: Type.Union([Type.String(), Type.Null()]),
  suppressForProject: Type.Boolean(),
});
export type ProjectContact = Static<typeof ProjectContact>;

// Call sessions (append only).

export const CallSessionCreate = Type.Object(
  {
    callSessionId: Type.Optional(ExternalId),
    projectId: ExternalId,
    contactId: Uuid,
    outcome: Name(50),
    startedAt: DateTime,
    durationSeconds: Type.Optional(Type.Union([Type.Integer({ minimum: 0, maximum: 7 * 86_400 }), Type.Null()])),
    notes: Type.Optional(Nullable(Text(10_000))),
  },
  { additionalProperties: false },
);
export type CallSessionCreate = Static<typeof CallSessionCreate>;
/** Call sessions take no update: the schema exists for the registry, and nothing passes it. */
export const CallSessionUpdate = Type.Object({}, { additionalProperties: false });
/** A call session create in a push: the contact by `contactId` or `contactLocalId`. */
export const CallSessionPushCreate = Type.Union([
  Type.Object({ ...CallSessionCreate.properties, contactLocalId: LocalRef }, { additionalProperties: false }),
  Type.Object({ ...Type.Omit(CallSessionCreate, ['contactId']).properties, contactLocalId: LocalId }, { additionalProperties: false }),
]);

export const CallSession = Type.Object({
  ...Base,
  callSessionId: Type.Union([Type.String(), Type.Null()]),
  projectId: Type.String(),
  contactId: Type.String(),
  outcome: Type.String(),
  startedAt: Type.String(),
  durationSeconds: Type.Union([Type.Integer(), Type.Null()]),
  notes: Type.Union([Type.String(), Type.Null()]),
  agentCode: Type.Union([Type.String(), Type.Null()]),
});
export type CallSession = Static<typeof CallSession>;

export const CallSessionListQuery = Type.Object(
  {
    projectId: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    contactId: Type.Optional(Uuid),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
  },
  { additionalProperties: false },
);
export type CallSessionListQuery = Static<typeof CallSessionListQuery>;

// Terminal sessions.

export const TerminalScope = Type.Union([Type.Literal('project'), Type.Literal('contact'), Type.Literal('global')]);

export const TerminalSessionCreate = Type.Object(
  {
    terminalId: Type.Optional(ExternalId),
    scope: TerminalScope,
    projectId: Type.Optional(Type.Union([ExternalId, Type.Null()])),
    contactId: Type.Optional(Type.Union([Uuid, Type.Null()])),
    reason: Name(500),
    expiresAt: Type.Optional(Type.Union([DateTime, Type.Null()])),
  },
  { additionalProperties: false },
);
export type TerminalSessionCreate = Static<typeof TerminalSessionCreate>;
export const TerminalSessionUpdate = Type.Object({}, { additionalProperties: false });
export const TerminalSessionPushCreate = Type.Object({ ...TerminalSessionCreate.properties, contactLocalId: LocalRef }, { additionalProperties: false });

export const TerminalSession = Type.Object({
  ...Base,
  terminalId: Type.Union([Type.String(), Type.Null()]),
  scope: Type.String(),
  projectId: Type.Union([Type.String(), Type.Null()]),
  contactId: Type.Union([Type.String(), Type.Null()]),
  reason: Type.String(),
  expiresAt: Type.Union([Type.String(), Type.Null()]),
  createdByAgent: Type.Union([Type.String(), Type.Null()]),
  active: Type.Boolean(),
});
export type TerminalSession = Static<typeof TerminalSession>;

export const TerminalListQuery = Type.Object(
  {
    active: Type.Optional(Type.Boolean()),
    projectId: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    contactId: Type.Optional(Uuid),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
  },
  { additionalProperties: false },
);
export type TerminalListQuery = Static<typeof TerminalListQuery>;

// Contacts upsert (dedupe).

/** `POST /api/contacts/upsert`: `contactId` is the contact's external id here. */
export const ContactUpsert = Type.Object(
  {
    ...Type.Omit(ContactCreate, ['phonePrimary', 'externalId']).properties,
    contactId: Type.Optional(ExternalId),
    phonePrimary: Type.Optional(ContactCreate.properties.phonePrimary),
  },
  { additionalProperties: false },
);
export type ContactUpsert = Static<typeof ContactUpsert>;

export const ContactUpsertResult = Type.Object({
  contact: Type.Record(Type.String(), Type.Unknown()),
  created: Type.Boolean(),
  matchedBy: Type.Union([Type.Literal('externalId'), Type.Literal('phone'), Type.Literal('email'), Type.Null()]),
});
export type ContactUpsertResult = Static<typeof ContactUpsertResult>;

// Settings.

export const OutreachSettings = Type.Object({
  callDailyLimit: Type.Integer(),
  callWeeklyLimit: Type.Integer(),
  callCooldownHours: Type.Integer(),
  /** The tenant's requests per minute per credential, when lower than the server's; null: the server's. */
  rateLimitPerMinute: Type.Union([Type.Integer(), Type.Null()]),
});
export type OutreachSettings = Static<typeof OutreachSettings>;
export const OutreachSettingsPatch = Type.Object(
  {
    callDailyLimit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
    callWeeklyLimit: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000 })),
    callCooldownHours: Type.Optional(Type.Integer({ minimum: 0, maximum: 24 * 365 })),
    rateLimitPerMinute: Type.Optional(Type.Union([Type.Integer({ minimum: 1, maximum: 1_000_000 }), Type.Null()])),
  },
  { additionalProperties: false, minProperties: 1 },
);
export type OutreachSettingsPatch = Static<typeof OutreachSettingsPatch>;

// Eligibility.

export const ELIGIBILITY_REASONS = [
  'project_suppressed',
  'do_not_call',
  'suppressed_for_project',
  'terminal_project',
  'terminal_contact',
  'terminal_global',
  'cooldown',
  'daily_limit',
  'weekly_limit',
] as const;
export type EligibilityReasonCode = (typeof ELIGIBILITY_REASONS)[number];

export const EligibilityReason = Type.Object({
  code: Type.Unsafe<EligibilityReasonCode>({ type: 'string', enum: [...ELIGIBILITY_REASONS] }),
  message: Type.String(),
});

export const EligibilityQuery = Type.Object(
  { projectId: Type.String({ minLength: 1, maxLength: 200 }), contactId: Type.String({ minLength: 1, maxLength: 64 }) },
  { additionalProperties: false },
);
export type EligibilityQuery = Static<typeof EligibilityQuery>;

export const Eligibility = Type.Object({
  projectId: Type.String(),
  contactId: Type.String(),
  eligible: Type.Boolean(),
  reasons: Type.Array(EligibilityReason),
});
export type Eligibility = Static<typeof Eligibility>;

export const EligibleCallsQuery = Type.Object(
  {
    projectId: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
  },
  { additionalProperties: false },
);
export type EligibleCallsQuery = Static<typeof EligibleCallsQuery>;

export const EligibleCall = Type.Object({
  projectId: Type.String(),
  projectName: Type.String(),
  contactId: Type.String(),
  contact: Type.Object({
    firstName: Type.String(),
    lastName: Type.Union([Type.String(), Type.Null()]),
    phonePrimary: Type.Union([Type.String(), Type.Null()]),
    email: Type.Union([Type.String(), Type.Null()]),
    preferredChannel: Type.Union([Type.String(), Type.Null()]),
  }),
});
export type EligibleCall = Static<typeof EligibleCall>;

// The HubSpot export.

export const HubspotIntegrationPut = Type.Object(
  {
    accessToken: Type.Optional(Type.String({ minLength: 8, maxLength: 1000, pattern: '^[\\x21-\\x7e]+$' })),
    enabled: Type.Boolean(),
  },
  { additionalProperties: false },
);
export type HubspotIntegrationPut = Static<typeof HubspotIntegrationPut>;

export const HubspotStatus = Type.Object({
  enabled: Type.Boolean(),
  status: Type.Union([Type.Literal('idle'), Type.Literal('running'), Type.Literal('backing_off'), Type.Literal('error')]),
  exported: Type.Integer(),
  pending: Type.Integer(),
  failed: Type.Integer(),
  retries: Type.Integer(),
  lastError: Type.Union([Type.String(), Type.Null()]),
  lastSuccessAt: Type.Union([Type.String(), Type.Null()]),
  /** Whether a token is stored for the tenant (the token itself is never returned). */
  hasToken: Type.Boolean(),
  /** Where the token comes from: the tenant's own, the server's HUBSPOT_ACCESS_TOKEN, or none. */
  tokenSource: Type.Union([Type.Literal('tenant'), Type.Literal('server'), Type.Null()]),
});
export type HubspotStatus = Static<typeof HubspotStatus>;

/** `POST /api/integrations/hubspot/retry`: every dead letter, or the ones named. */
export const HubspotRetryBody = Type.Union([
  Type.Object({ all: Type.Literal(true) }, { additionalProperties: false }),
  Type.Object({ ids: Type.Array(Type.Integer({ minimum: 1 }), { minItems: 1, maxItems: 1000 }) }, { additionalProperties: false }),
]);
export type HubspotRetryBody = Static<typeof HubspotRetryBody>;

export const HubspotDeadLetter = Type.Object({
  id: Type.Integer(),
  kind: Type.String(),
  recordId: Type.String(),
  attempts: Type.Integer(),
  lastError: Type.Union([Type.String(), Type.Null()]),
  updatedAt: Type.String(),
});
export type HubspotDeadLetter = Static<typeof HubspotDeadLetter>;
