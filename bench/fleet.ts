// The rows of the sustained benchmark (issue 11): a fleet of FLEET_USERS users and FLEET_DEVICES
// devices sending sessions in arrival order, as NDJSON request bodies.

import { randomUUID } from 'node:crypto';
import type { Random } from '../gateway/src/db/seeded-random';

export const FLEET_USERS = 20_000;
export const FLEET_DEVICES = 10_000;
/** Simulated time per million rows: about 100 sessions a day per device. */
export const SIMULATED_MS_PER_MILLION_ROWS = 24 * 3_600_000;
/** Share of rows that arrive late, and how late at most. */
export const LATE_SHARE = 0.03;
export const LATE_MAX_MS = 36 * 3_600_000;
/** Clocks and queues: a row's time is off its place in the arrival order by up to this, either way. */
const JITTER_MS = 60_000;

/** The device ids of the fleet, as the bench database registers them. */
export function fleetDeviceId(index: number): string {
  return `fleet-${String(index).padStart(5, '0')}`;
}

export interface FleetTimeline {
  /** time_recorded of the first row on time. */
  readonly startMs: number;
  /** Rows in the whole run; row i is on time at startMs + i / totalRows * spanMs. */
  readonly totalRows: number;
  readonly spanMs: number;
}

/** Rows `from` .. `from + count - 1` of the run, as an NDJSON body. */
export function fleetBody(random: Random, timeline: FleetTimeline, from: number, count: number): string {
  const lines: string[] = new Array<string>(count);
  for (let k = 0; k < count; k++) {
    const i = from + k;
    const userId = random.int(1, FLEET_USERS);
    // A user mostly records on their own device; older clients send null or leave it out.
    const draw = random.float();
    const device = draw < 0.8 ? `"${fleetDeviceId(1 + (userId % FLEET_DEVICES))}"` : draw < 0.9 ? 'null' : undefined;
    let time = timeline.startMs + (i / timeline.totalRows) * timeline.spanMs + (random.float() * 2 - 1) * JITTER_MS;
    if (random.chance(LATE_SHARE)) time -= random.float() * LATE_MAX_MS;
    const sentiment = random.chance(0.85) ? Math.round((random.float() * 2 - 1) * 1000) / 1000 : null;
    lines[k] =
      `{"user_id":${userId},${device === undefined ? '' : `"device_id":${device},`}` +
      `"talked_time":${Math.round(random.float() * 600_000) / 1000},"microphone_used":${random.chance(0.93)},` +
      `"speaker_used":${random.chance(0.7)},"voice_sentiment":${sentiment},` +
      `"time_recorded":"${new Date(Math.floor(time)).toISOString()}","event_id":"${randomUUID()}"}`;
  }
  return `${lines.join('\n')}\n`;
}
