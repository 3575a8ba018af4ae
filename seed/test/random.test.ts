import { createRandom, mulberry32 } from '../../gateway/src/db/seeded-random';

describe('mulberry32', () => {
  it('gives the same sequence for the same seed', () => {
    const a = mulberry32(42);
    const b = mulberry32(42);
    const first = Array.from({ length: 100 }, () => a());
    expect(Array.from({ length: 100 }, () => b())).toEqual(first);
    expect(new Set(first).size).toBe(100);
  });

  it('gives different sequences for different seeds', () => {
    const a = mulberry32(1);
    const b = mulberry32(2);
    expect(Array.from({ length: 10 }, () => a())).not.toEqual(Array.from({ length: 10 }, () => b()));
  });

  it('stays in [0, 1) and covers the range', () => {
    const next = mulberry32(7);
    let min = 1;
    let max = 0;
    for (let i = 0; i < 100_000; i++) {
      const value = next();
      min = Math.min(min, value);
      max = Math.max(max, value);
    }
    expect(min).toBeGreaterThanOrEqual(0);
    expect(min).toBeLessThan(0.001);
    expect(max).toBeLessThan(1);
    expect(max).toBeGreaterThan(0.999);
  });
});

describe('createRandom', () => {
  it('draws integers within both inclusive bounds, hitting each end', () => {
    const random = createRandom(3);
    const seen = new Set<number>();
    for (let i = 0; i < 10_000; i++) seen.add(random.int(16, 20));
    expect([...seen].sort()).toEqual([16, 17, 18, 19, 20]);
  });

  it('draws whole unsigned 32-bit integers', () => {
    const random = createRandom(4);
    for (let i = 0; i < 10_000; i++) {
      const word = random.uint32();
      expect(Number.isInteger(word) && word >= 0 && word <= 0xffffffff).toBe(true);
    }
  });

  it('refuses to pick from an empty list', () => {
    expect(() => createRandom(5).pick([])).toThrow(RangeError);
  });

  it('draws characters only from the alphabet, at the requested length', () => {
    expect(createRandom(6).chars('ab', 50)).toMatch(/^[ab]{50}$/);
  });

  it('draws normals with roughly the requested mean and spread', () => {
    const random = createRandom(8);
    const values = Array.from({ length: 20_000 }, () => random.normal(10, 2));
    const mean = values.reduce((sum, value) => sum + value, 0) / values.length;
    const sd = Math.sqrt(values.reduce((sum, value) => sum + (value - mean) ** 2, 0) / values.length);
    expect(values.every(Number.isFinite)).toBe(true);
    expect(mean).toBeCloseTo(10, 1);
    expect(sd).toBeCloseTo(2, 1);
  });
});
