import pg from 'pg';
import type { Logger } from 'pino';
import { API_KEY_CHANGES_CHANNEL, listenForApiKeyChanges } from '../db/api-keys';

/** How the listener's connection shows in pg_stat_activity. */
export const API_KEY_LISTENER_APPLICATION_NAME = 'metrics-gateway api-key-changes';

/** What the listener tells of changes: the authenticator's cache. */
export interface KeyChangeSubscriber {
  forget(keyHashHex: string): void;
  forgetAll(): void;
}

export interface ApiKeyChangeListenerOptions {
  readonly connectionString: string;
  readonly subscriber: KeyChangeSubscriber;
  readonly logger: Logger;
  /** The first wait before reconnecting; it doubles with each failure up to maxRetryDelayMs. */
  readonly minRetryDelayMs?: number;
  readonly maxRetryDelayMs?: number;
}

const KEY_HASH_HEX = /^[0-9a-f]{64}$/;

/**
 * LISTENs for changes to API keys on a connection of its own (a pooled one would be handed to other
 * work, and a COPY could not share it), and passes each to the subscriber. States:
 * - connecting: a client is being connected and told to LISTEN;
 * - listening: notifications arrive; a failure of the connection goes to waiting;
 * - waiting: a timer reconnects after a jittered backoff (100 ms doubling to 10 s by default);
 * - closed: close() was called; nothing is reconnected.
 * Each time LISTEN succeeds, the subscriber forgets everything: changes made while no connection
 * listened were not heard of. Until then AUTH_CACHE_TTL_MS bounds how long a stale answer lives.
 */
export class ApiKeyChangeListener {
  private client: pg.Client | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private failures = 0;
  private closed = false;
  private isListening = false;
  private readonly minRetryDelayMs: number;
  private readonly maxRetryDelayMs: number;

  constructor(private readonly options: ApiKeyChangeListenerOptions) {
    this.minRetryDelayMs = options.minRetryDelayMs ?? 100;
    this.maxRetryDelayMs = options.maxRetryDelayMs ?? 10_000;
  }

  /** Resolves once the first attempt to listen has succeeded or failed; retries go on in the background. */
  start(): Promise<void> {
    return this.connect();
  }

  /** Whether a connection is listening now. */
  get listening(): boolean {
    return this.isListening;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.isListening = false;
    clearTimeout(this.retryTimer);
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => undefined);
  }

  private async connect(): Promise<void> {
    if (this.closed) return;
    const client = new pg.Client({
      connectionString: this.options.connectionString,
      application_name: API_KEY_LISTENER_APPLICATION_NAME,
      // A connection that died silently (a partition) is noticed, not listened on forever.
      keepAlive: true,
    });
    this.client = client;
    client.on('notification', ({ channel, payload }) => {
      if (channel === API_KEY_CHANGES_CHANNEL) this.announce(payload ?? '');
    });
    client.on('error', (error) => this.lost(client, error));
    client.on('end', () => this.lost(client, new Error('the connection ended')));
    try {
      await client.connect();
      await listenForApiKeyChanges(client);
    } catch (error) {
      this.lost(client, error);
      return;
    }
    if (this.client !== client) return; // lost or closed meanwhile
    this.isListening = true;
    this.options.subscriber.forgetAll();
    if (this.failures > 0) this.options.logger.info('listening for API key changes again; the key cache was emptied');
    this.failures = 0;
  }

  private announce(payload: string): void {
    if (KEY_HASH_HEX.test(payload)) this.options.subscriber.forget(payload);
    else this.options.subscriber.forgetAll();
  }

  /** Handles the end of `client`, once: its errors and end event after the first are ignored. */
  private lost(client: pg.Client, error: unknown): void {
    if (this.client !== client || this.closed) return;
    this.client = undefined;
    this.isListening = false;
    client.on('error', () => undefined); // a client may report more than one failure
    client.end().catch(() => undefined);
    const delay = Math.min(this.maxRetryDelayMs, this.minRetryDelayMs * 2 ** this.failures);
    this.failures++;
    this.options.logger.warn(
      { err: error, retryInMs: delay },
      'not listening for API key changes; a revoked key may work for up to AUTH_CACHE_TTL_MS until reconnected',
    );
    // Jittered, so that gateways cut off together do not all come back at the same moment.
    this.retryTimer = setTimeout(() => void this.connect(), delay * (0.5 + Math.random() / 2));
    this.retryTimer.unref();
  }
}
