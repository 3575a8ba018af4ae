import type { Queryable } from '../db/pool';
import { existingDeviceIds, existingUserIds } from '../db/references';

export interface MissingReferences {
  readonly users: ReadonlySet<number>;
  readonly devices: ReadonlySet<string>;
}

const NONE: MissingReferences = { users: new Set(), devices: new Set() };

/**
 * The ids could not be checked: the lookup failed or ran past its deadline (a lock on users or devices,
 * PostgreSQL down or not answering). Whether they exist is unknown; the error handler answers 503.
 */
export class ReferencesUnchecked extends Error {
  constructor(options: { cause: unknown }) {
    super('the user and device ids could not be checked in time', options);
    this.name = 'ReferencesUnchecked';
  }
}

/**
 * Users and devices known to exist, so that most rows are checked without a query. A miss is looked
 * up in PostgreSQL (one query per kind for a whole chunk of rows), so a user registered a moment ago
 * by anyone is accepted. Misses are not cached: the next row asks again. The sets are cleared when
 * they grow past `maxEntries`, and by `forgetAll()` when a flush shows that a row was deleted.
 */
export class ReferenceCache {
  private readonly users = new Set<number>();
  private readonly devices = new Set<string>();

  constructor(
    private readonly db: Queryable,
    private readonly maxEntries = 1_000_000,
  ) {}

  rememberUser(id: number): void {
    if (this.users.size >= this.maxEntries) this.users.clear();
    this.users.add(id);
  }

  rememberDevice(id: string): void {
    if (this.devices.size >= this.maxEntries) this.devices.clear();
    this.devices.add(id);
  }

  forgetAll(): void {
    this.users.clear();
    this.devices.clear();
  }

  /** Which of these ids name no row in users or devices; throws ReferencesUnchecked when that cannot be known. */
  async findMissing(userIds: Iterable<number>, deviceIds: Iterable<string>): Promise<MissingReferences> {
    // Nearly every call is all hits: allocate the sets of unknown ids only on a miss.
    let unknownUsers: Set<number> | undefined;
    for (const id of userIds) if (!this.users.has(id)) (unknownUsers ??= new Set()).add(id);
    let unknownDevices: Set<string> | undefined;
    for (const id of deviceIds) if (!this.devices.has(id)) (unknownDevices ??= new Set()).add(id);
    if (unknownUsers === undefined && unknownDevices === undefined) return NONE;
    unknownUsers ??= new Set();
    unknownDevices ??= new Set();

    const [users, devices] = await Promise.all([
      unknownUsers.size === 0 ? [] : existingUserIds(this.db, [...unknownUsers]),
      unknownDevices.size === 0 ? [] : existingDeviceIds(this.db, [...unknownDevices]),
    ]).catch((error: unknown) => {
      throw new ReferencesUnchecked({ cause: error });
    });
    for (const id of users) {
      unknownUsers.delete(id);
      this.rememberUser(id);
    }
    for (const id of devices) {
      unknownDevices.delete(id);
      this.rememberDevice(id);
    }
    return { users: unknownUsers, devices: unknownDevices };
  }
}
