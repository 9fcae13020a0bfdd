import type { AgentCreate, AgentPatch, User } from '@fieldsync/protocol/auth';
import { pgErrorCode, PgCodes, type Db, type Queryable } from '../../db/db.js';
import { AppError, notFound } from '../../errors.js';
import { toUser } from '../auth/auth.service.js';
import { revokeUserRefreshTokens, updatePasswordHash } from '../auth/auth.repository.js';
import { generateApiKey, hashPassword, keyPrefix, MIN_API_KEY_LENGTH, sha256 } from '../auth/credentials.js';
import * as repo from './agents.repository.js';
import type { ServerWrites } from '../../sync/server-writes.js';

export interface ApiKeyInfo {
  id: string;
  prefix: string;
  createdAt: string;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

export interface AgentsService {
  create(tenantId: string, input: AgentCreate): Promise<{ agent: User; apiKey: string; keyId: string }>;
  list(tenantId: string): Promise<User[]>;
  /** Changes name and activation; a `password` is set (argon2id) and the agent's refresh tokens revoked. */
  update(tenantId: string, agentCode: string, patch: AgentPatch): Promise<User>;
  createKey(tenantId: string, agentCode: string): Promise<{ apiKey: string; key: ApiKeyInfo }>;
  listKeys(tenantId: string, agentCode: string): Promise<ApiKeyInfo[]>;
  revokeKey(tenantId: string, agentCode: string, keyId: string): Promise<void>;
}

const toKeyInfo = (k: repo.KeyRow): ApiKeyInfo => ({
  id: k.id,
  prefix: k.prefix,
  createdAt: k.createdAt.toISOString(),
  lastUsedAt: k.lastUsedAt?.toISOString() ?? null,
  revokedAt: k.revokedAt?.toISOString() ?? null,
});

/** Issues a key for a user; `fixedKey` is the bootstrap admin key chosen by the operator. */
export async function issueApiKey(db: Queryable, tenantId: string, userId: string, fixedKey?: string) {
  // Configuration refuses a short bootstrap key already; this holds for every other caller.
  if (fixedKey !== undefined && fixedKey.length < MIN_API_KEY_LENGTH) throw new AppError('VALIDATION_FAILED', `An API key has at least ${MIN_API_KEY_LENGTH} characters`);
  const apiKey = fixedKey ?? generateApiKey();
  const key = await repo.insertApiKey(db, { tenantId, userId, prefix: keyPrefix(apiKey), keyHash: sha256(apiKey) });
  return { apiKey, key: toKeyInfo(key) };
}

/** Agents (users of a tenant), their API keys, activation. */
export function createAgentsService(deps: {
  db: Db;
  /** Versioned writes: a user's directory entry is a synced record (`users`). */
  writes: ServerWrites;
  /** A user was deactivated, renamed or lost a key: caches and live sessions must forget it. */
  onUserChanged: (tenantId: string, userId: string, revoked: boolean) => void;
  /** An admin set a user's password: failed logins counted against the account may go. */
  onPasswordSet?: (tenantId: string, userId: string) => Promise<void>;
}): AgentsService {
  const { db } = deps;
  const mustFind = async (tenantId: string, agentCode: string) => {
    const user = await repo.findUserByCode(db, tenantId, agentCode);
    if (!user) throw notFound('Agent');
    return user;
  };

  return {
    async create(tenantId, input) {
      const passwordHash = input.password ? await hashPassword(input.password) : undefined;
      try {
        return await deps.writes.write(tenantId, {}, async (tx) => {
          const user = await repo.insertUser(tx, {
            tenantId,
            agentCode: input.agentCode,
            name: input.name,
            email: input.email,
            role: input.role ?? 'agent',
            passwordHash,
          });
          const { apiKey, key } = await issueApiKey(tx, tenantId, user.id);
          await tx.touch('users', [user.id]);
          return { agent: toUser(user), apiKey, keyId: key.id };
        });
      } catch (error) {
        if (pgErrorCode(error) === PgCodes.uniqueViolation) {
          throw new AppError('DUPLICATE', 'An agent with this agent code or email already exists');
        }
        throw error;
      }
    },

    async list(tenantId) {
      return (await repo.listUsers(db, tenantId)).map(toUser);
    },

    async update(tenantId, agentCode, patch) {
      const { password, ...fields } = patch;
      const passwordHash = password === undefined ? undefined : await hashPassword(password);
      const user = await deps.writes.write(tenantId, {}, async (tx) => {
        const updated = await repo.updateUser(tx, tenantId, agentCode, fields);
        // What devices hold of the user (name, active) changed: a new version of the entry.
        if (updated && (fields.name !== undefined || fields.isActive !== undefined)) await tx.touch('users', [updated.id]);
        if (updated && passwordHash !== undefined) {
          await updatePasswordHash(tx, tenantId, updated.id, passwordHash);
          // A reset usually follows a leak or a lost password: no session outlives it.
          await revokeUserRefreshTokens(tx, tenantId, updated.id);
        }
        return updated;
      });
      if (!user) throw notFound('Agent');
      deps.onUserChanged(tenantId, user.id, patch.isActive === false);
      if (passwordHash !== undefined) await deps.onPasswordSet?.(tenantId, user.id);
      return toUser(user);
    },

    async createKey(tenantId, agentCode) {
      const user = await mustFind(tenantId, agentCode);
      return issueApiKey(db, tenantId, user.id);
    },

    async listKeys(tenantId, agentCode) {
      const user = await mustFind(tenantId, agentCode);
      return (await repo.listApiKeys(db, tenantId, user.id)).map(toKeyInfo);
    },

    async revokeKey(tenantId, agentCode, keyId) {
      const user = await mustFind(tenantId, agentCode);
      if (!/^[0-9a-f-]{36}$/i.test(keyId) || !(await repo.revokeApiKey(db, tenantId, user.id, keyId))) {
        throw notFound('API key');
      }
      deps.onUserChanged(tenantId, user.id, true);
    },
  };
}
