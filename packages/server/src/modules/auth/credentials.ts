import { randomBytes } from 'node:crypto';
import { customAlphabet } from 'nanoid';
import argon2 from 'argon2';

const keyBody = customAlphabet('0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz', 40);

/** A new API key: `fsk_` and 40 random characters (~238 bits). Shown once, stored hashed. */
export function generateApiKey(): string {
  return `fsk_${keyBody()}`;
}

/** The public part of a key that names it in lists and logs without revealing it. */
export function keyPrefix(key: string): string {
  return key.slice(0, 12);
}

export { sha256 } from '../../lib/hash.js';

export function generateRefreshToken(): string {
  return randomBytes(32).toString('base64url');
}

export const hashPassword = (password: string) => argon2.hash(password, { type: argon2.argon2id });

export async function verifyPassword(hash: string, password: string): Promise<boolean> {
  try {
    return await argon2.verify(hash, password);
  } catch {
    return false;
  }
}
