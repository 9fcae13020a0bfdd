import { parsePhoneNumberFromString, type CountryCode } from 'libphonenumber-js/max';

/** The E.164 form of `raw` read in `region`, or undefined when it is not a valid number. */
export function toE164(raw: string, region: string): string | undefined {
  const parsed = parsePhoneNumberFromString(raw, region as CountryCode);
  return parsed?.isValid() ? parsed.number : undefined;
}

/**
 * The digits a phone-like search term should match in stored E.164 numbers: the number's
 * international digits when the term parses, otherwise its digits without trunk zeros.
 * Undefined when the term does not look like a phone number.
 */
export function phoneSearchDigits(term: string, region: string): string | undefined {
  if (!/^[+\d\s().-]{3,}$/.test(term)) return undefined;
  const digits = term.replace(/\D/g, '');
  if (digits.length < 3) return undefined;
  const e164 = toE164(term, region);
  if (e164) return e164.slice(1);
  return digits.replace(/^0+/, '') || digits;
}
