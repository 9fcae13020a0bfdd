import { invalid } from '../../errors.js';
import { toE164 } from './phone.js';

/**
 * Normalises the contact fields a write sets: phones to E.164 (a blank secondary phone is
 * none), email to lower case; a bad phone or a blank first name is a 400 naming the field.
 */
export function normaliseContactFields<T extends Record<string, unknown>>(input: T, region: string): T {
  // Object.assign, not spread: several times faster in V8 for a contact's width (sync/push/decide.ts).
  const out: Record<string, unknown> = Object.assign({}, input);
  for (const field of ['phonePrimary', 'phoneSecondary'] as const) {
    const raw = out[field];
    if (typeof raw !== 'string') continue;
    if (field === 'phoneSecondary' && raw.trim() === '') {
      out[field] = null;
      continue;
    }
    const e164 = toE164(raw, region);
    if (!e164) throw invalid(field, 'is not a valid phone number');
    out[field] = e164;
  }
  if (typeof out.firstName === 'string' && out.firstName.trim() === '') throw invalid('firstName', 'must not be blank');
  if (typeof out.email === 'string') out.email = out.email.toLowerCase();
  return out as T;
}
