/** The longest stored file name, in code points. */
export const MAX_FILENAME_LENGTH = 255;

// C0 and C1 controls, DEL, and the bidirectional overrides that make a name read otherwise
// than it is ("invoice\u202Efdp.exe").
const UNSAFE_CHARS = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/gu;

/**
 * A client's file name made safe to store and show: the part after the last `/` or `\`,
 * without control or bidi characters, trimmed of spaces and dots at the ends, at most
 * MAX_FILENAME_LENGTH code points; "file" when nothing is left. Never used as a path.
 */
export function sanitiseFilename(raw: string): string {
  const base = raw.normalize('NFC').split(/[/\\]/).pop() ?? '';
  const cleaned = base.replace(UNSAFE_CHARS, '').replace(/^[\s.]+|[\s.]+$/g, '');
  const capped = [...cleaned].slice(0, MAX_FILENAME_LENGTH).join('').replace(/[\s.]+$/, '');
  return capped === '' ? 'file' : capped;
}

const TOKEN = "[a-z0-9][a-z0-9!#$&^_.+-]*";
const CONTENT_TYPE = new RegExp(`^(${TOKEN})/(${TOKEN})$`);

/**
 * The media type of a declared content type, lower case and without parameters
 * (`Image/JPEG; q=1` -> `image/jpeg`), or undefined when it is not one.
 */
export function normaliseContentType(raw: string): string | undefined {
  const essence = raw.split(';')[0].trim().toLowerCase();
  return CONTENT_TYPE.test(essence) ? essence : undefined;
}

/** Whether `type` (normalised) is one of `allowed` (`type/subtype`, `type/*` or `*\/*`). */
export function isAllowedType(type: string, allowed: readonly string[]): boolean {
  const [major] = type.split('/');
  return allowed.some((a) => a === type || a === `${major}/*` || a === '*/*');
}

/**
 * `Content-Disposition: attachment` for a stored name: an ASCII `filename` for old clients
 * (anything else, quotes and backslashes become `_`) and the exact name in `filename*` (RFC 6266).
 */
export function contentDisposition(filename: string): string {
  const ascii = filename.replace(/[^\x20-\x7e]|["\\]/g, '_');
  const encoded = encodeURIComponent(filename).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encoded}`;
}

/** A byte range of a file, inclusive. */
export interface ByteRange {
  start: number;
  end: number;
}

/**
 * The single byte range a `Range` header asks of a file of `size` bytes (RFC 9110 §14):
 * undefined for no header, another unit, several ranges or a malformed one (the whole file is
 * sent), 'unsatisfiable' for a range that starts past the end (416).
 */
export function parseRange(header: string | undefined, size: number): ByteRange | 'unsatisfiable' | undefined {
  if (header === undefined) return undefined;
  const match = /^bytes=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!match || (match[1] === '' && match[2] === '')) return undefined;
  if (match[1] === '') {
    // A suffix: the last N bytes.
    const length = Number(match[2]);
    if (length === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - length), end: size - 1 };
  }
  const start = Number(match[1]);
  if (match[2] !== '' && Number(match[2]) < start) return undefined;
  if (start >= size) return 'unsatisfiable';
  const end = match[2] === '' ? size - 1 : Number(match[2]);
  return { start, end: Math.min(end, size - 1) };
}
