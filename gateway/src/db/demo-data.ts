import type { Pool, PoolClient } from 'pg';
import { createRandom, type Random } from './seeded-random';

// The demo users and devices: generated from fixed seeds, so they are identical on every run and
// machine; SEED_DEMO_DATA puts them into an empty database at start-up, `npm run seed` into any.

export interface DemoUser {
  readonly id: number;
  readonly name: string;
  readonly age: number | null;
}

export interface DemoDevice {
  readonly id: string;
  /** Operating system and version, e.g. `Android 13`, `iOS 17.2`. */
  readonly type: string;
  /** Marketing model name, e.g. `Pixel 7`. */
  readonly name: string;
}

export const DEMO_USER_COUNT = 100;
export const DEMO_DEVICE_COUNT = 60;
export const DEMO_MIN_AGE = 16;
export const DEMO_MAX_AGE = 80;

// Separate streams, so that a change to one list does not reshuffle the other.
const USERS_SEED = 0x5eed_0001;
const DEVICES_SEED = 0x5eed_0002;

/** Given and family names that belong together, so that generated full names read as real ones. */
const NAME_POOLS: readonly { readonly given: readonly string[]; readonly family: readonly string[] }[] = [
  {
    given: ['Emma', 'Oliver', 'Charlotte', 'James', 'Amelia', 'Harry', 'Grace', 'Thomas'],
    family: ['Smith', 'Johnson', 'Walker', 'Bennett', 'Hughes', 'Clarke', 'Turner', 'Murphy'],
  },
  {
    given: ['Sofía', 'Mateo', 'Valentina', 'Santiago', 'Lucía', 'Diego', 'Camila', 'Javier'],
    family: ['García', 'Rodríguez', 'Martínez', 'López', 'Hernández', 'Fernández', 'Ramírez', 'Torres'],
  },
  {
    given: ['Lukas', 'Anna', 'Maximilian', 'Lena', 'Felix', 'Johanna', 'Jonas', 'Marie'],
    family: ['Müller', 'Schmidt', 'Schneider', 'Fischer', 'Weber', 'Becker', 'Hoffmann', 'Wagner'],
  },
  {
    given: ['Camille', 'Louis', 'Chloé', 'Hugo', 'Manon', 'Gabriel', 'Inès', 'Théo'],
    family: ['Martin', 'Bernard', 'Dubois', 'Lefèvre', 'Moreau', 'Laurent', 'Girard', 'Rousseau'],
  },
  {
    given: ['Giulia', 'Lorenzo', 'Francesca', 'Alessandro', 'Chiara', 'Matteo', 'Elena', 'Davide'],
    family: ['Rossi', 'Russo', 'Ferrari', 'Esposito', 'Bianchi', 'Romano', 'Colombo', 'Ricci'],
  },
  {
    given: ['Aarav', 'Priya', 'Vihaan', 'Ananya', 'Arjun', 'Kavya', 'Rohan', 'Meera'],
    family: ['Sharma', 'Patel', 'Iyer', 'Reddy', 'Gupta', 'Nair', 'Mehta', 'Banerjee'],
  },
  {
    given: ['Wei', 'Xiu Ying', 'Hao', 'Mei', 'Jun', 'Li Na', 'Chen', 'Yan'],
    family: ['Wang', 'Li', 'Zhang', 'Liu', 'Chen', 'Yang', 'Huang', 'Zhao'],
  },
  {
    given: ['Haruto', 'Yui', 'Sota', 'Aoi', 'Ren', 'Hina', 'Kaito', 'Sakura'],
    family: ['Sato', 'Suzuki', 'Takahashi', 'Tanaka', 'Watanabe', 'Ito', 'Nakamura', 'Kobayashi'],
  },
  {
    given: ['Seo-yeon', 'Min-jun', 'Ji-woo', 'Do-yun', 'Ha-eun', 'Seo-jun', 'Soo-ah', 'Jae-won'],
    family: ['Kim', 'Lee', 'Park', 'Choi', 'Jung', 'Kang', 'Cho', 'Yoon'],
  },
  {
    given: ['Chinedu', 'Amara', 'Oluwaseun', 'Ngozi', 'Kwame', 'Abena', 'Tendai', 'Zanele'],
    family: ['Okafor', 'Adeyemi', 'Mensah', 'Okonkwo', 'Boateng', 'Moyo', 'Dlamini', 'Nwosu'],
  },
  {
    given: ['Omar', 'Layla', 'Youssef', 'Fatima', 'Karim', 'Nour', 'Hassan', 'Amira'],
    family: ['Haddad', 'Khalil', 'Mansour', 'Nasser', 'Saleh', 'Farouk', 'Aziz', 'Hamdan'],
  },
  {
    given: ['Ivan', 'Olga', 'Dmitri', 'Natalia', 'Piotr', 'Katarzyna', 'Tomasz', 'Svetlana'],
    family: ['Ivanova', 'Kowalski', 'Petrov', 'Nowak', 'Smirnov', 'Wiśniewska', 'Volkov', 'Zielińska'],
  },
  {
    given: ['João', 'Beatriz', 'Pedro', 'Mariana', 'Rafael', 'Larissa', 'Thiago', 'Fernanda'],
    family: ['Silva', 'Santos', 'Oliveira', 'Souza', 'Costa', 'Pereira', 'Almeida', 'Carvalho'],
  },
  {
    given: ['Erik', 'Astrid', 'Lars', 'Ingrid', 'Mikael', 'Freja', 'Anders', 'Sigrid'],
    family: ['Andersson', 'Johansson', 'Nielsen', 'Hansen', 'Larsen', 'Lindqvist', 'Berg', 'Eriksen'],
  },
  {
    given: ['Minh', 'Linh', 'Duc', 'Thao', 'Quang', 'Hoa', 'Tuan', 'Mai'],
    family: ['Nguyen', 'Tran', 'Le', 'Pham', 'Hoang', 'Vu', 'Dang', 'Bui'],
  },
  {
    given: ['Emre', 'Elif', 'Burak', 'Zeynep', 'Mehmet', 'Ayşe', 'Can', 'Deniz'],
    family: ['Yılmaz', 'Kaya', 'Demir', 'Şahin', 'Çelik', 'Aydın', 'Öztürk', 'Arslan'],
  },
];

/** Phone and tablet models with operating-system versions that they actually shipped with or ran. */
const DEVICE_MODELS: readonly {
  readonly name: string;
  readonly os: string;
  readonly versions: readonly string[];
}[] = [
  { name: 'vivo V11i', os: 'Android', versions: ['8.1', '9'] },
  { name: 'vivo Y20', os: 'Android', versions: ['10', '11'] },
  { name: 'Samsung Galaxy S9', os: 'Android', versions: ['8.0', '9', '10'] },
  { name: 'Samsung Galaxy A52', os: 'Android', versions: ['11', '12', '13', '14'] },
  { name: 'Samsung Galaxy A14', os: 'Android', versions: ['13', '14'] },
  { name: 'Samsung Galaxy S23', os: 'Android', versions: ['13', '14'] },
  { name: 'Pixel 6a', os: 'Android', versions: ['12', '13', '14'] },
  { name: 'Pixel 7', os: 'Android', versions: ['13', '14'] },
  { name: 'Pixel 8 Pro', os: 'Android', versions: ['14'] },
  { name: 'Xiaomi Redmi Note 8', os: 'Android', versions: ['9', '10', '11'] },
  { name: 'Xiaomi Redmi Note 12', os: 'Android', versions: ['12', '13'] },
  { name: 'Xiaomi 13', os: 'Android', versions: ['13', '14'] },
  { name: 'OnePlus 9', os: 'Android', versions: ['11', '12', '13'] },
  { name: 'OnePlus Nord 2', os: 'Android', versions: ['11', '12', '13'] },
  { name: 'OPPO A74', os: 'Android', versions: ['11', '12'] },
  { name: 'Huawei P30 lite', os: 'Android', versions: ['9', '10'] },
  { name: 'Motorola Moto G8', os: 'Android', versions: ['10'] },
  { name: 'Motorola Moto G54', os: 'Android', versions: ['13', '14'] },
  { name: 'Nokia 7.2', os: 'Android', versions: ['9', '10', '11'] },
  { name: 'realme 8', os: 'Android', versions: ['11', '12'] },
  { name: 'iPhone 8', os: 'iOS', versions: ['15.8', '16.7'] },
  { name: 'iPhone X', os: 'iOS', versions: ['15.8', '16.7'] },
  { name: 'iPhone 11', os: 'iOS', versions: ['16.5', '17.2'] },
  { name: 'iPhone 12 mini', os: 'iOS', versions: ['16.7', '17.2'] },
  { name: 'iPhone 13', os: 'iOS', versions: ['16.5', '17.2', '17.4'] },
  { name: 'iPhone 14', os: 'iOS', versions: ['16.5', '17.2', '17.5'] },
  { name: 'iPhone 15 Pro', os: 'iOS', versions: ['17.2', '17.5', '18.1'] },
  { name: 'iPhone SE (2nd generation)', os: 'iOS', versions: ['16.7', '17.2'] },
  { name: 'iPad (9th generation)', os: 'iPadOS', versions: ['15.7', '16.5', '17.2'] },
  { name: 'iPad Air (5th generation)', os: 'iPadOS', versions: ['16.5', '17.2'] },
  { name: 'iPad mini (6th generation)', os: 'iPadOS', versions: ['16.5', '17.2'] },
  { name: 'iPad Pro 11-inch (4th generation)', os: 'iPadOS', versions: ['16.5', '17.2'] },
];

const LOWER = 'abcdefghijklmnopqrstuvwxyz';
const UPPER = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';
const DIGITS = '0123456789';

/** Shape of a demo device id: `id847-gj-335-Vow6DhCP6`. */
export const DEMO_DEVICE_ID_PATTERN = /^id\d{3}-[a-z]{2}-\d{3}-[A-Za-z0-9]{9}$/;

function buildUsers(random: Random): DemoUser[] {
  const users: DemoUser[] = [];
  const taken = new Set<string>();
  for (let id = 1; id <= DEMO_USER_COUNT; id++) {
    let name: string;
    do {
      const pool = random.pick(NAME_POOLS);
      name = `${random.pick(pool.given)} ${random.pick(pool.family)}`;
    } while (taken.has(name));
    taken.add(name);
    const age = random.chance(0.06) ? null : random.int(DEMO_MIN_AGE, DEMO_MAX_AGE);
    users.push(Object.freeze({ id, name, age }));
  }
  return users;
}

function buildDeviceId(random: Random): string {
  let tail: string;
  // Mixed case like the ids real clients send; retry the rare draw that has only one case.
  do {
    tail = random.chars(LOWER + UPPER + DIGITS, 9);
  } while (!/[a-z]/.test(tail) || !/[A-Z]/.test(tail));
  return `id${random.int(100, 999)}-${random.chars(LOWER, 2)}-${random.chars(DIGITS, 3)}-${tail}`;
}

function buildDevices(random: Random): DemoDevice[] {
  const devices: DemoDevice[] = [];
  const taken = new Set<string>();
  while (devices.length < DEMO_DEVICE_COUNT) {
    const id = buildDeviceId(random);
    if (taken.has(id)) continue;
    taken.add(id);
    const model = random.pick(DEVICE_MODELS);
    devices.push(Object.freeze({ id, type: `${model.os} ${random.pick(model.versions)}`, name: model.name }));
  }
  return devices;
}

export const DEMO_USERS: readonly DemoUser[] = Object.freeze(buildUsers(createRandom(USERS_SEED)));
export const DEMO_DEVICES: readonly DemoDevice[] = Object.freeze(buildDevices(createRandom(DEVICES_SEED)));

export const DEMO_USER_IDS: readonly number[] = Object.freeze(DEMO_USERS.map((user) => user.id));
export const DEMO_DEVICE_IDS: readonly string[] = Object.freeze(DEMO_DEVICES.map((device) => device.id));

export interface SeedCounts {
  /** Users inserted by this call (0 when they were all there already). */
  users: number;
  /** Devices inserted by this call. */
  devices: number;
}

// Explicit ids, so the demo users are the same rows everywhere; existing rows are left alone. The rows
// inserted are counted from RETURNING: on Citus (users and devices are reference tables) an INSERT ...
// SELECT goes through the coordinator and its command tag counts the rows selected, conflicts included.
const INSERT_USERS = `
  INSERT INTO users (id, name, age)
  SELECT * FROM unnest($1::int[], $2::text[], $3::int[])
  ON CONFLICT (id) DO NOTHING
  RETURNING 1`;

// Inserting explicit ids does not advance the identity sequence; move it past the highest id so that
// users created later through the API do not collide. Never move it backwards: ids handed out before
// (even to users deleted since) stay unused.
const ADVANCE_USER_ID_SEQUENCE = `
  SELECT setval(seq, greatest((SELECT max(id) FROM users), pg_sequence_last_value(seq), 1))
  FROM CAST(pg_get_serial_sequence('users', 'id') AS regclass) AS seq`;

const INSERT_DEVICES = `
  INSERT INTO devices (id, type, name)
  SELECT * FROM unnest($1::varchar[], $2::text[], $3::text[])
  ON CONFLICT (id) DO NOTHING
  RETURNING 1`;

/**
 * Inserts the demo users and devices that are missing, in one transaction. Safe to run any number of
 * times and from several processes at once.
 */
export async function seedDemoData(pool: Pool): Promise<SeedCounts> {
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query('BEGIN');
    try {
      const counts = await insertDemoRows(client, DEMO_USERS, DEMO_DEVICES);
      await client.query('COMMIT');
      return counts;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {
        broken = true; // the connection is in an unknown state: do not hand it back to the pool
      });
      throw error;
    }
  } finally {
    client.release(broken);
  }
}

async function insertDemoRows(
  client: PoolClient,
  users: readonly DemoUser[],
  devices: readonly DemoDevice[],
): Promise<SeedCounts> {
  // Held until commit. It conflicts with the lock every INSERT takes, so a user created through the API
  // meanwhile waits and then draws its id from the advanced sequence instead of colliding with a demo
  // id; concurrent seeders queue up too. Reads and foreign-key checks against users are not blocked.
  await client.query('LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE');
  const insertedUsers = await client.query(INSERT_USERS, [
    users.map((user) => user.id),
    users.map((user) => user.name),
    users.map((user) => user.age),
  ]);
  await client.query(ADVANCE_USER_ID_SEQUENCE);
  const insertedDevices = await client.query(INSERT_DEVICES, [
    devices.map((device) => device.id),
    devices.map((device) => device.type),
    devices.map((device) => device.name),
  ]);
  return { users: insertedUsers.rows.length, devices: insertedDevices.rows.length };
}

/** True when there are no users and no devices: a fresh database that start-up may seed. */
export async function databaseIsEmpty(pool: Pool): Promise<boolean> {
  const result = await pool.query<{ empty: boolean }>(
    `SELECT NOT EXISTS (SELECT 1 FROM users) AND NOT EXISTS (SELECT 1 FROM devices) AS empty`,
  );
  return result.rows[0]?.empty === true;
}
