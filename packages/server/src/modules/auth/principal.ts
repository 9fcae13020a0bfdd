import type { Role } from '@fieldsync/protocol/auth';

/** Who is calling: resolved from an API key or an access token by the auth hook. */
export interface Principal {
  tenantId: string;
  userId: string;
  agentCode: string;
  role: Role;
  /** The device named by X-Device-Id or the socket handshake, when any. */
  deviceId?: string;
  /** The API key used, when the caller authenticated with one. */
  keyId?: string;
  via: 'apiKey' | 'jwt';
}

export const isManager = (p: Pick<Principal, 'role'>) => p.role === 'admin' || p.role === 'manager';
