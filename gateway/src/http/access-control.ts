import type { RequestHandler, Response } from 'express';
import type { Pool } from 'pg';
import type { Logger } from 'pino';
import { findActiveApiKey, type ApiKeyPrincipal, type Scope } from '../auth/api-keys';
import { addressGroup } from '../auth/address-group';
import { ApiKeyAuthenticator } from '../auth/authenticator';
import { TokenBucketLimiter } from '../auth/rate-limiter';
import type { Config } from '../config';
import { AppError } from '../errors';
import { routePath } from './route-path';

/** What a request needs: nothing, any valid key (`ingest` is the lesser scope), or an admin key. */
export type Requirement = 'open' | Scope;

/** Paths that never need a key: probes must work without secrets. */
const ALWAYS_OPEN_PATHS = ['/healthz', '/readyz'] as const;
const METRICS_PATHS = ['/metrics'] as const;
const DOCS_PATHS = ['/docs', '/openapi.json'] as const;
/** The status page and its files: they hold no data, and a browser cannot send a key to load them. */
const STATUS_PAGE_PATHS = ['/', '/status'] as const;
/** What the status page shows: the same figures as /metrics, so behind a key exactly when /metrics is. */
const STATS_PATHS = ['/v1/stats'] as const;

/** The routes an `ingest` key may use; every other route, present or future, needs `admin`. */
const INGEST_ROUTES = new Set(['POST /v1/metrics', 'POST /v1/metrics/bulk']);

/** Which paths need less than an admin key; a listed path also covers what is below it (/docs/x). */
export interface PathPolicy {
  /** No key needed. */
  readonly open: readonly string[];
  /** Any valid key, whatever its scope. */
  readonly anyKey: readonly string[];
  /** Open paths that show more to a key: a key sent there is checked like anywhere else (401 if bad). */
  readonly keyOptional?: readonly string[];
}

/** Whether `path` (normalized) is listed, or is below a listed path. */
function isListed(normalized: string, paths: readonly string[]): boolean {
  // '/' stands for the root alone, not for everything below it.
  return paths.some(
    (listedPath) => normalized === listedPath || (listedPath !== '/' && normalized.startsWith(`${listedPath}/`)),
  );
}

/**
 * The key a request was let in with, when it sent one; set by accessControl, so undefined too when
 * AUTH_REQUIRED=false. For a route that shows an admin more than others (/v1/stats).
 */
export function principalOf(res: Response): ApiKeyPrincipal | undefined {
  return res.locals.apiKeyPrincipal as ApiKeyPrincipal | undefined;
}

/**
 * Default deny: a route is open only when its path is listed as open, needs any key when listed so or
 * when it is an ingest route, and an admin key otherwise, so a route added later is protected until
 * someone decides otherwise. Express matches paths without regard to case or a trailing slash, so
 * neither is compared here.
 */
export function requirementOf(method: string, path: string, policy: PathPolicy): Requirement {
  const normalized = routePath(path);
  if (isListed(normalized, policy.open)) return 'open';
  if (isListed(normalized, policy.anyKey) || INGEST_ROUTES.has(`${method} ${normalized}`)) return 'ingest';
  return 'admin';
}

/** RFC 6750 token characters; longer than any key we issue is refused as malformed. */
const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]{1,512}=*) *$/i;
const REALM = 'Bearer realm="metrics-gateway"';

function unauthorized(res: Response, message: string, invalidToken: boolean): AppError {
  res.setHeader('WWW-Authenticate', invalidToken ? `${REALM}, error="invalid_token"` : REALM);
  return new AppError('unauthorized', message);
}

export interface AccessControlOptions {
  readonly authenticator: ApiKeyAuthenticator;
  readonly paths: PathPolicy;
  readonly rateLimiter?: TokenBucketLimiter<number>;
  /** Lookups of keys not in the cache, per client address group (address-group.ts). */
  readonly lookupBudget?: TokenBucketLimiter<string>;
}

/** Client addresses whose lookup budgets are kept at most; the least recently seen are forgotten first. */
const LOOKUP_BUDGET_ADDRESSES = 10_000;

/**
 * The one middleware that checks API keys, installed before every route when AUTH_REQUIRED=true:
 * 401 without a valid key, 403 when the key's scope is too small, 429 past the key's rate limit.
 * Answers never repeat the key; the log line of the request names the key, never shows it.
 */
export function accessControl({
  authenticator,
  paths,
  rateLimiter,
  lookupBudget,
}: AccessControlOptions): RequestHandler {
  return async (req, res, next) => {
    const needed = requirementOf(req.method, req.path, paths);
    const header = req.headers.authorization;
    const keySent = header !== undefined && header !== '';
    if (needed === 'open' && !(keySent && isListed(routePath(req.path), paths.keyOptional ?? []))) return next();

    if (!keySent) {
      throw unauthorized(res, 'an API key is required: send Authorization: Bearer <key>', false);
    }
    const token = BEARER.exec(header)?.[1];
    if (token === undefined) throw unauthorized(res, 'the Authorization header must be "Bearer <key>"', true);
    const principal: ApiKeyPrincipal | undefined = await authenticator.authenticate(
      token,
      lookupBudget && (() => lookupBudget.take(addressGroup(req.ip))),
    );
    if (principal === undefined) throw unauthorized(res, 'the API key is unknown or revoked', true);

    req.log.setBindings({ apiKey: principal.name });
    res.locals.apiKeyPrincipal = principal;
    if (needed === 'admin' && principal.scope !== 'admin') {
      res.setHeader('WWW-Authenticate', `${REALM}, error="insufficient_scope", scope="admin"`);
      throw new AppError(
        'forbidden',
        `the API key ${JSON.stringify(principal.name)} has scope ingest; this needs admin`,
      );
    }
    const decision = rateLimiter?.take(principal.id);
    if (decision !== undefined && !decision.allowed) {
      throw new AppError(
        'overloaded',
        'this API key is over its rate limit (RATE_LIMIT_PER_KEY_RPS)',
        [],
        decision.retryAfterSeconds,
      );
    }
    next();
  };
}

/**
 * /healthz, /readyz and the status page's files open; /metrics, /v1/stats and the docs open, or behind
 * any key when configured so.
 */
export function pathPolicy(config: Pick<Config, 'metricsAuthRequired' | 'docsAuthRequired'>): PathPolicy {
  const open: string[] = [...ALWAYS_OPEN_PATHS, ...STATUS_PAGE_PATHS];
  const anyKey: string[] = [];
  (config.metricsAuthRequired ? anyKey : open).push(...METRICS_PATHS, ...STATS_PATHS);
  (config.docsAuthRequired ? anyKey : open).push(...DOCS_PATHS);
  // Open, /v1/stats shows counts and codes; an admin key sent along shows the rejection messages too.
  return { open, anyKey, keyOptional: [...STATS_PATHS] };
}

/**
 * The access control that `config` asks for and the authenticator it uses (for api-key-changes.ts to
 * tell of changes), or undefined when AUTH_REQUIRED=false (everything open).
 */
export function accessControlFor(
  config: Pick<
    Config,
    | 'authRequired'
    | 'authCacheTtlMs'
    | 'metricsAuthRequired'
    | 'docsAuthRequired'
    | 'rateLimitPerKeyRps'
    | 'rateLimitBurst'
    | 'authLookupRatePerAddress'
    | 'authLookupBurstPerAddress'
    | 'authLookupConcurrency'
  >,
  pool: Pool,
  logger: Logger,
): { handler: RequestHandler; authenticator: ApiKeyAuthenticator } | undefined {
  if (!config.authRequired) return undefined;
  const authenticator = new ApiKeyAuthenticator({
    lookup: (keyHash) => findActiveApiKey(pool, keyHash),
    ttlMs: config.authCacheTtlMs,
    logger,
    maxConcurrentLookups: config.authLookupConcurrency,
  });
  const handler = accessControl({
    authenticator,
    paths: pathPolicy(config),
    rateLimiter:
      config.rateLimitPerKeyRps > 0
        ? new TokenBucketLimiter({ ratePerSecond: config.rateLimitPerKeyRps, burst: config.rateLimitBurst })
        : undefined,
    lookupBudget:
      config.authLookupRatePerAddress > 0
        ? new TokenBucketLimiter({
            ratePerSecond: config.authLookupRatePerAddress,
            burst: config.authLookupBurstPerAddress,
            maxKeys: LOOKUP_BUDGET_ADDRESSES,
          })
        : undefined,
  });
  return { handler, authenticator };
}
