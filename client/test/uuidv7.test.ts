import { uuidv7 } from '../src/uuidv7';

// RFC 9562, section 5.7: 48-bit Unix milliseconds, version 7, variant 0b10; time-ordered and, within
// one process, monotonic even within a millisecond and when the clock goes back.

const FORMAT = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

const bytesOf = (id: string): Buffer => Buffer.from(id.replace(/-/g, ''), 'hex');

it('has the version (7) and variant (0b10) bits, and the Unix milliseconds in its first 48 bits', () => {
  const now = Date.UTC(2026, 11, 3, 1, 2, 3, 456);
  const id = uuidv7(now + 10_000); // later than any earlier call of this file
  expect(id).toMatch(FORMAT);
  const bytes = bytesOf(id);
  expect(bytes[6]! >> 4).toBe(7);
  expect(bytes[8]! >> 6).toBe(0b10);
  expect(bytes.readUIntBE(0, 6)).toBe(now + 10_000);
});

it('is strictly increasing in its string order: within one millisecond, across them, and when the clock goes back', () => {
  const base = Date.now() + 60_000;
  const ids: string[] = [];
  for (let i = 0; i < 10_000; i++) ids.push(uuidv7(base)); // one millisecond: more than 4096 ids
  ids.push(uuidv7(base - 5_000)); // the clock went back
  for (let i = 0; i < 1000; i++) ids.push(uuidv7(base + 100 + Math.floor(i / 10)));
  for (const id of ids) expect(id).toMatch(FORMAT);
  for (let i = 1; i < ids.length; i++) {
    if (!((ids[i - 1] as string) < (ids[i] as string)))
      throw new Error(`not increasing at ${i}: ${ids[i - 1]} ${ids[i]}`);
  }
  expect(new Set(ids).size).toBe(ids.length);
  // A counter that runs out moves on to the next millisecond rather than wrapping.
  expect(bytesOf(ids[9_999] as string).readUIntBE(0, 6)).toBeGreaterThan(base);
});

it('differs in its random bits between two ids of the same millisecond', () => {
  const base = Date.now() + 120_000;
  const a = bytesOf(uuidv7(base)).subarray(8);
  const b = bytesOf(uuidv7(base)).subarray(8);
  expect(a.equals(b)).toBe(false);
});
