import {
  DEMO_DEVICE_ID_PATTERN,
  DEMO_DEVICE_IDS,
  DEMO_DEVICES,
  DEMO_MAX_AGE,
  DEMO_MIN_AGE,
  DEMO_USER_IDS,
  DEMO_USERS,
} from '../../gateway/src/db/demo-data';

describe('DEMO_USERS', () => {
  it('has 100 users with ids 1..100 in order', () => {
    expect(DEMO_USERS.map((user) => user.id)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    expect(DEMO_USER_IDS).toEqual(DEMO_USERS.map((user) => user.id));
  });

  it('has distinct full names that the users table accepts', () => {
    const names = DEMO_USERS.map((user) => user.name);
    expect(new Set(names).size).toBe(names.length);
    for (const name of names) {
      expect(name).toMatch(/^\S.*\s.*\S$/); // given and family name
      expect(name.length).toBeLessThanOrEqual(200);
      expect(name.isWellFormed() && !name.includes('\u0000')).toBe(true);
    }
  });

  it('mixes name origins rather than repeating a few', () => {
    const familyNames = new Set(DEMO_USERS.map((user) => user.name.split(' ').at(-1)));
    expect(familyNames.size).toBeGreaterThan(50);
  });

  it('has ages from 16 to 80, a few of them unknown', () => {
    const ages = DEMO_USERS.map((user) => user.age);
    const known = ages.filter((age): age is number => age !== null);
    expect(known.every((age) => Number.isInteger(age) && age >= DEMO_MIN_AGE && age <= DEMO_MAX_AGE)).toBe(true);
    expect(ages.length - known.length).toBeGreaterThanOrEqual(1);
    expect(ages.length - known.length).toBeLessThanOrEqual(10);
    expect(Math.min(...known)).toBeLessThan(25);
    expect(Math.max(...known)).toBeGreaterThan(70);
  });
});

describe('DEMO_DEVICES', () => {
  it('has 60 devices with unique ids shaped like real client ids', () => {
    expect(DEMO_DEVICES).toHaveLength(60);
    expect(new Set(DEMO_DEVICE_IDS).size).toBe(60);
    expect(DEMO_DEVICE_IDS).toEqual(DEMO_DEVICES.map((device) => device.id));
    for (const { id } of DEMO_DEVICES) {
      expect(id).toMatch(DEMO_DEVICE_ID_PATTERN);
      const tail = id.slice(-9);
      expect(/[a-z]/.test(tail) && /[A-Z]/.test(tail)).toBe(true);
    }
  });

  it('accepts the two example ids from the contract with its pattern', () => {
    expect('id774-wc-935-uJq2AcOUx').toMatch(DEMO_DEVICE_ID_PATTERN);
    expect('id847-gj-335-Vow6DhCP6').toMatch(DEMO_DEVICE_ID_PATTERN);
  });

  it('pairs each model with its own operating system', () => {
    for (const device of DEMO_DEVICES) {
      expect(device.type).toMatch(/^(Android \d+(\.\d)?|iOS \d+\.\d+|iPadOS \d+\.\d+)$/);
      if (device.name.startsWith('iPhone')) expect(device.type).toMatch(/^iOS /);
      else if (device.name.startsWith('iPad')) expect(device.type).toMatch(/^iPadOS /);
      else expect(device.type).toMatch(/^Android /);
    }
    const systems = new Set(DEMO_DEVICES.map((device) => device.type.split(' ')[0]));
    expect(systems).toEqual(new Set(['Android', 'iOS', 'iPadOS']));
    expect(new Set(DEMO_DEVICES.map((device) => device.name)).size).toBeGreaterThan(15);
  });
});

describe('determinism', () => {
  it('builds the same data when the module is loaded again', () => {
    jest.isolateModules(() => {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const again = require('../../gateway/src/db/demo-data') as typeof import('../../gateway/src/db/demo-data');
      expect(again.DEMO_USERS).not.toBe(DEMO_USERS);
      expect(again.DEMO_USERS).toEqual(DEMO_USERS);
      expect(again.DEMO_DEVICES).toEqual(DEMO_DEVICES);
    });
  });

  // Pinned, so that an edit that reshuffles the demo data (which databases already hold) is noticed.
  it('keeps the rows that existing databases were seeded with', () => {
    expect(DEMO_USERS[0]).toEqual({ id: 1, name: 'Matteo Romano', age: null });
    expect(DEMO_USERS[99]).toEqual({ id: 100, name: 'Hugo Dubois', age: 31 });
    expect(DEMO_DEVICES[0]).toEqual({
      id: 'id601-vv-139-r4LPx7qXw',
      type: 'Android 10',
      name: 'Xiaomi Redmi Note 8',
    });
  });

  it('is frozen', () => {
    expect(Object.isFrozen(DEMO_USERS)).toBe(true);
    expect(Object.isFrozen(DEMO_USERS[0])).toBe(true);
    expect(Object.isFrozen(DEMO_DEVICES)).toBe(true);
    expect(Object.isFrozen(DEMO_DEVICES[0])).toBe(true);
  });
});
