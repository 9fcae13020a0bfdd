import { createHash } from 'node:crypto';

/** SHA-256 hex: how keys and refresh tokens are stored and looked up, and how budgets name credentials. */
export function sha256(value: string): string {
  return createHash('sha256').update(value).digest('hex');
}
