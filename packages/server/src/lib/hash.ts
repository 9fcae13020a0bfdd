import { createHash } from 'node:crypto';

/** SHA-256 hex: how keys and refresh tokens are stored and looked up, and how budgets name credentials. */
export function sha256(value: string): string {
  return createHash('sha256').update(value).digest('hex');
}

/**
 * A name-based UUID (version 5 layout over SHA-1): the same parts always give the same id, so a
 * record identified by what it is (a message by its sender and client id) has one id.
 */
export function derivedUuid(...parts: string[]): string {
  const bytes = createHash('sha1').update(parts.join('\u0000')).digest().subarray(0, 16);
  bytes[6] = (bytes[6] & 0x0f) | 0x50;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
