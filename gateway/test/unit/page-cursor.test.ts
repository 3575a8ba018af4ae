import { decodePageCursor, encodePageCursor } from '../../src/http/page-cursor';

const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');

describe('page cursor', () => {
  it('decodes what it encodes', () => {
    const cursor = { timeRecorded: '2026-01-02T03:04:05.123456Z', id: '9223372036854775807' };
    expect(decodePageCursor(encodePageCursor(cursor))).toEqual(cursor);
  });

  it.each([
    ['not base64 JSON', 'bm90IGpzb24'],
    ['an empty string', ''],
    ['an object instead of a pair', b64({ timeRecorded: '2026-01-02T03:04:05Z', id: '1' })],
    ['a pair with a third member', b64(['2026-01-02T03:04:05Z', '1', 'x'])],
    ['a time that is not RFC 3339', b64(['yesterday', '1'])],
    ['a numeric id', b64(['2026-01-02T03:04:05Z', 1])],
    ['an id of 0', b64(['2026-01-02T03:04:05Z', '0'])],
    ['an id with a leading zero', b64(['2026-01-02T03:04:05Z', '01'])],
    ['an id past bigint', b64(['2026-01-02T03:04:05Z', '9223372036854775808'])],
    ['a negative id', b64(['2026-01-02T03:04:05Z', '-1'])],
  ])('refuses %s', (_what, text) => {
    expect(decodePageCursor(text)).toBeUndefined();
  });
});
