/** One refused line or request as the status page lists it: never the whole payload. */
export interface RecentRejection {
  /** When the answer was sent, RFC 3339 UTC. */
  readonly time: string;
  readonly endpoint: 'single' | 'bulk';
  /** The NDJSON line number within its upload; null for a single metric or a refused request. */
  readonly line: number | null;
  /** The error code of the answer. */
  readonly error: string;
  /**
   * What the answer said about it, cut to MESSAGE_MAX_CHARS: this can name what the client sent (an
   * unknown field, a device id) or quote a piece of a line that is not JSON, so it needs an admin key.
   */
  readonly message: string;
}

/**
 * A rejection as shown without an admin key: what the gateway decided, nothing that the client sent.
 * The message is left out because it can hold that (field names, ids, a piece of a line).
 */
export type RejectionSummary = Omit<RecentRejection, 'message'>;

import { MESSAGE_MAX_CHARS, RECENT_REJECTIONS } from '../contract/schemas';

/** Cuts a message to `max` characters (code points), marking the cut. */
export function shortMessage(message: string, max = MESSAGE_MAX_CHARS): string {
  const chars = Array.from(message.replace(/\s+/g, ' ').trim());
  return chars.length <= max ? chars.join('') : `${chars.slice(0, max - 1).join('')}…`;
}

/**
 * The last few rejections, for the status page: a fixed ring of `capacity` entries, so that a flood of
 * bad lines costs no more memory than a trickle. `next` is where the next entry goes; once the ring is
 * full it is also the oldest entry.
 */
export class RecentRejections {
  private readonly ring: (RecentRejection | undefined)[];
  private next = 0;

  constructor(readonly capacity = RECENT_REJECTIONS) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`capacity must be >= 1, got ${capacity}`);
    this.ring = new Array<RecentRejection | undefined>(capacity).fill(undefined);
  }

  add(entry: RecentRejection): void {
    this.ring[this.next] = { ...entry, message: shortMessage(entry.message) };
    this.next = (this.next + 1) % this.capacity;
  }

  /** Newest first, without the messages. */
  summaries(): RejectionSummary[] {
    return this.list().map(({ time, endpoint, line, error }) => ({ time, endpoint, line, error }));
  }

  /** Newest first. */
  list(): RecentRejection[] {
    const out: RecentRejection[] = [];
    for (let i = 1; i <= this.capacity; i++) {
      const entry = this.ring[(this.next - i + this.capacity) % this.capacity];
      if (entry !== undefined) out.push(entry);
    }
    return out;
  }
}
