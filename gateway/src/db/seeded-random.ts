/**
 * A tiny seeded PRNG, so demo data and generated metrics are the same on every run.
 *
 * mulberry32 keeps 32 bits of state that advance by a fixed odd step (a Weyl sequence), so one stream
 * visits every state once in 2^32 draws and never repeats a state within a run. Different seeds walk the
 * same cycle from different points. Good enough for test data; never for anything secret.
 */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Convenience draws over one mulberry32 stream. */
export interface Random {
  /** Uniform in [0, 1). */
  float(): number;
  /** Uniform unsigned 32-bit integer. */
  uint32(): number;
  /** Uniform integer in [min, max], both inclusive. */
  int(min: number, max: number): number;
  /** True with probability p. */
  chance(p: number): boolean;
  /** One element of a non-empty list. */
  pick<T>(items: readonly T[]): T;
  /** Standard normal (Box-Muller), scaled: mean + sd * N(0, 1). */
  normal(mean: number, sd: number): number;
  /** `length` characters drawn from `alphabet`. */
  chars(alphabet: string, length: number): string;
}

export function createRandom(seed: number): Random {
  const next = mulberry32(seed);
  const random: Random = {
    float: next,
    // next() is an exact uint32 divided by 2^32, so this multiplication is exact.
    uint32: () => next() * 4294967296,
    int: (min, max) => min + Math.floor(next() * (max - min + 1)),
    chance: (p) => next() < p,
    pick: (items) => {
      if (items.length === 0) throw new RangeError('pick() from an empty list');
      return items[Math.floor(next() * items.length)] as (typeof items)[number];
    },
    normal: (mean, sd) => {
      // 1 - next() is in (0, 1], so the logarithm is finite.
      const radius = Math.sqrt(-2 * Math.log(1 - next()));
      return mean + sd * radius * Math.cos(2 * Math.PI * next());
    },
    chars: (alphabet, length) => {
      let out = '';
      for (let i = 0; i < length; i++) out += alphabet.charAt(Math.floor(next() * alphabet.length));
      return out;
    },
  };
  return random;
}
