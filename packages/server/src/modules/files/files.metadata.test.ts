import { describe, expect, it } from 'vitest';
import { contentDisposition, isAllowedType, MAX_FILENAME_LENGTH, normaliseContentType, parseRange, sanitiseFilename } from './files.metadata.js';

describe('sanitiseFilename', () => {
  it.each([
    ['photo.jpg', 'photo.jpg'],
    ['../../etc/passwd', 'passwd'],
    ['..\\..\\boot.ini', 'boot.ini'],
    ['/abs/path/x.pdf', 'x.pdf'],
    ['dir/', 'file'],
    ['..', 'file'],
    ['', 'file'],
    ['  .hidden. ', 'hidden'],
    ['a\u0000b\u0007c\u001b[31m.txt', 'abc[31m.txt'],
    ['tab\there\nnewline.txt', 'tabherenewline.txt'],
    ['invoice\u202Efdp.exe', 'invoicefdp.exe'],
    ['e\u0301te\u0301.png', 'été.png'],
    ['名前 "quoted".pdf', '名前 "quoted".pdf'],
  ])('%j -> %j', (raw, stored) => {
    expect(sanitiseFilename(raw)).toBe(stored);
  });

  it('caps names at MAX_FILENAME_LENGTH code points without splitting a character', () => {
    const name = sanitiseFilename('😀'.repeat(300) + '.png');
    expect([...name]).toHaveLength(MAX_FILENAME_LENGTH);
    expect(name.endsWith('😀')).toBe(true);
  });
});

describe('content types', () => {
  it('normalises to the lower-case media type without parameters, and refuses what is not one', () => {
    expect(normaliseContentType('Image/JPEG')).toBe('image/jpeg');
    expect(normaliseContentType('text/plain; charset=utf-8')).toBe('text/plain');
    expect(normaliseContentType('text')).toBeUndefined();
    expect(normaliseContentType('text/plain/x')).toBeUndefined();
    expect(normaliseContentType('te xt/plain')).toBeUndefined();
  });

  it('allows exact types and type/* ranges only', () => {
    const allowed = ['image/*', 'application/pdf'];
    expect(isAllowedType('image/webp', allowed)).toBe(true);
    expect(isAllowedType('application/pdf', allowed)).toBe(true);
    expect(isAllowedType('application/pdfx', allowed)).toBe(false);
    expect(isAllowedType('text/html', allowed)).toBe(false);
    expect(isAllowedType('text/html', ['*/*'])).toBe(true);
  });
});

describe('contentDisposition', () => {
  it('gives an ASCII fallback without quotes or backslashes, and the exact name encoded', () => {
    expect(contentDisposition('a.pdf')).toBe(`attachment; filename="a.pdf"; filename*=UTF-8''a.pdf`);
    expect(contentDisposition('été "x"\\.pdf')).toBe(`attachment; filename="_t_ _x__.pdf"; filename*=UTF-8''%C3%A9t%C3%A9%20%22x%22%5C.pdf`);
    expect(contentDisposition("it's (1).txt")).toBe(`attachment; filename="it's (1).txt"; filename*=UTF-8''it%27s%20%281%29.txt`);
  });
});

describe('parseRange', () => {
  it.each([
    [undefined, 100, undefined],
    ['bytes=0-9', 100, { start: 0, end: 9 }],
    ['bytes=90-', 100, { start: 90, end: 99 }],
    ['bytes=90-500', 100, { start: 90, end: 99 }],
    ['bytes=-10', 100, { start: 90, end: 99 }],
    ['bytes=-500', 100, { start: 0, end: 99 }],
    ['bytes=100-', 100, 'unsatisfiable'],
    ['bytes=-0', 100, 'unsatisfiable'],
    ['bytes=0-0', 0, 'unsatisfiable'],
    ['bytes=5-1', 100, undefined],
    ['bytes=0-1,4-5', 100, undefined],
    ['items=0-1', 100, undefined],
    ['bytes=a-b', 100, undefined],
    ['bytes=-', 100, undefined],
  ] as const)('%s of %i bytes -> %j', (header, size, expected) => {
    expect(parseRange(header, size)).toEqual(expected);
  });
});
