import { randomBytes } from 'node:crypto';
import { customAlphabet } from 'nanoid';
import argon2 from 'argon2';

const keyBody = customAlphabet('0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz', 40);

/** A new API key: `fsk_` and 40 random characters (~238 bits). Shown once, stored hashed. */
export function generateApiKey(): string {
  return `fsk_${keyBody()}`;
}

/** Keys shorter than this are refused, the operator's bootstrap key included. */
export const MIN_API_KEY_LENGTH = 32;

/**
 * The public part of a key that names it in lists and logs: at most 8 characters and always
 * less than a quarter of the key (`fsk_` and 4 random characters of a generated key).
 */
export function keyPrefix(key: string): string {
  return key.slice(0, Math.min(8, Math.ceil(key.length / 4) - 1));
}

export { sha256 } from '../../lib/hash.js';

export function generateRefreshToken(): string {
  return randomBytes(32).toString('base64url');
}

export const hashPassword = (password: string) => argon2.hash(password, { type: argon2.argon2id });

let dummy: Promise<string> | undefined;
/**
 * A hash of a random password nobody knows, with the parameters of real ones: logins with no
 * account (unknown, ambiguous, no password set) verify against it, so they take as long as a
 * wrong password.
 */
export const dummyPasswordHash = (): Promise<string> => (dummy ??= hashPassword(randomBytes(32).toString('base64url')));

export async function verifyPassword(hash: string, password: string): Promise<boolean> {
  try {
    return await argon2.verify(hash, password);
  } catch {
    return false;
  }
}
