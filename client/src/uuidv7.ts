import { randomFillSync } from 'node:crypto';

// UUID version 7 (RFC 9562, section 5.7): 48 bits of Unix milliseconds, the version (7), 12 bits
// rand_a, the variant (0b10), 62 bits rand_b. Time-ordered, so the unique index on event_id takes
// its inserts at one end instead of all over (a random v4 would). Monotonic within this process
// (section 6.2, method 1): rand_a is a counter, started at a random value below 2^11 each new
// millisecond and incremented within one; when it runs out, or the clock goes back, the timestamp
// of the last UUID is carried on, one millisecond up when needed.

const HEX = Array.from({ length: 256 }, (_, byte) => byte.toString(16).padStart(2, '0'));
/** Random bytes are drawn in blocks: one randomFillSync per UUID would cost more than the rest. */
const POOL_BYTES = 8192;
const COUNTER_MAX = 0xfff;

const pool = Buffer.alloc(POOL_BYTES);
let poolOffset = POOL_BYTES;
let lastMs = -1;
let counter = 0;
const bytes = Buffer.alloc(16);

function random(count: number): number {
  if (poolOffset + count > POOL_BYTES) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  const at = poolOffset;
  poolOffset += count;
  return at;
}

/** A new UUIDv7, as the usual lowercase 8-4-4-4-12 string; `now` is for tests. */
export function uuidv7(now: number = Date.now()): string {
  if (now > lastMs) {
    lastMs = now;
    const at = random(2);
    counter = (((pool[at] as number) << 8) | (pool[at + 1] as number)) & 0x7ff;
  } else if (counter < COUNTER_MAX) {
    counter += 1; // same millisecond, or the clock went back: keep the order
  } else {
    lastMs += 1;
    counter = 0;
  }
  const ms = lastMs;
  const high = Math.floor(ms / 2 ** 16);
  bytes.writeUInt32BE(high >>> 0, 0);
  bytes.writeUInt16BE(ms % 2 ** 16, 4);
  bytes[6] = 0x70 | (counter >>> 8);
  bytes[7] = counter & 0xff;
  const at = random(8);
  pool.copy(bytes, 8, at, at + 8);
  bytes[8] = 0x80 | ((bytes[8] as number) & 0x3f);
  let out = '';
  for (let i = 0; i < 16; i++) {
    out += HEX[bytes[i] as number] as string;
    if (i === 3 || i === 5 || i === 7 || i === 9) out += '-';
  }
  return out;
}
