import { Type, type Static } from 'typebox';
import { Text } from './envelope.js';

export const Role = Type.Union([Type.Literal('admin'), Type.Literal('manager'), Type.Literal('agent')]);
export type Role = Static<typeof Role>;

export const AgentCode = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_.-]+$' });

export const User = Type.Object({
  id: Type.String(),
  tenantId: Type.String(),
  agentCode: Type.String(),
  name: Type.String(),
  email: Type.Union([Type.String(), Type.Null()]),
  role: Type.String(),
  isActive: Type.Boolean(),
  createdAt: Type.String(),
  lastSeenAt: Type.Union([Type.String(), Type.Null()]),
});
export type User = Static<typeof User>;

/** Passwords (SPEC §2): at least 10 characters; stored as argon2id hashes only. */
export const Password = Type.String({ minLength: 10, maxLength: 1024, pattern: '^[^\\u0000]*$' });

export const LoginBody = Type.Object(
  {
    /**
     * Agent code or email. `A1@acme` names the tenant too (a slug has no dot, an email's
     * domain has one); without a tenant the login means the user of tenant `default`, else
     * the one user with it across tenants (docs/security.md).
     */
    login: Text(254 + 64, 1),
    password: Type.String({ minLength: 1, maxLength: 1024 }),
    /** Tenant slug; wins over an `@slug` suffix of `login`. */
    tenant: Type.Optional(Type.String({ minLength: 1, maxLength: 63 })),
  },
  { additionalProperties: false },
);
export type LoginBody = Static<typeof LoginBody>;

export const RefreshBody = Type.Object(
  { refreshToken: Type.String({ minLength: 1, maxLength: 512 }) },
  { additionalProperties: false },
);
export const Tokens = Type.Object({
  accessToken: Type.String(),
  refreshToken: Type.String(),
  expiresIn: Type.Integer(),
  user: User,
});
export type Tokens = Static<typeof Tokens>;

export const AgentCreate = Type.Object(
  {
    agentCode: AgentCode,
    name: Text(100, 1),
    email: Type.Optional(Type.String({ maxLength: 254, format: 'email' })),
    password: Type.Optional(Password),
    role: Type.Optional(Role),
  },
  { additionalProperties: false },
);
export type AgentCreate = Static<typeof AgentCreate>;

export const AgentPatch = Type.Object(
  {
    isActive: Type.Optional(Type.Boolean()),
    name: Type.Optional(Text(100, 1)),
    /** Sets or resets the agent's password; their refresh tokens are revoked. */
    password: Type.Optional(Password),
  },
  { additionalProperties: false },
);
export type AgentPatch = Static<typeof AgentPatch>;

/** `POST /api/auth/password`: a user changes their own password. */
export const PasswordChange = Type.Object(
  { currentPassword: Type.String({ minLength: 1, maxLength: 1024 }), newPassword: Password },
  { additionalProperties: false },
);
export type PasswordChange = Static<typeof PasswordChange>;

export const ApiKeyInfo = Type.Object({
  id: Type.String(),
  prefix: Type.String(),
  createdAt: Type.String(),
  lastUsedAt: Type.Union([Type.String(), Type.Null()]),
  revokedAt: Type.Union([Type.String(), Type.Null()]),
});

export const TenantCreate = Type.Object(
  {
    name: Text(200, 1),
    slug: Type.String({ minLength: 2, maxLength: 63, pattern: '^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$' }),
  },
  { additionalProperties: false },
);
export type TenantCreate = Static<typeof TenantCreate>;

export const Tenant = Type.Object({
  id: Type.String(),
  name: Type.String(),
  slug: Type.String(),
  createdAt: Type.String(),
});
export type Tenant = Static<typeof Tenant>;
