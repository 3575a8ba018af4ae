import type { RequestHandler, Response } from 'express';
import type { Pool } from 'pg';
import type { Logger } from 'pino';
import { findActiveApiKey, type ApiKeyPrincipal, type Scope as KeyScope } from '../auth/api-keys';
import { addressGroup } from '../auth/address-group';
import { ApiKeyAuthenticator } from '../auth/authenticator';
import { TokenBucketLimiter } from '../auth/rate-limiter';
import type { Config } from '../config';
import { AppError } from '../contract/errors';
import { nameApiKey } from './access-log';
import type { Route, Scope } from './routes';

export type RouteAccess = Pick<Route, 'scope' | 'keyOptional'>;

/** What a request needs: nothing, any valid key (`ingest` is the lesser scope), or an admin key. */
export type Requirement = 'open' | KeyScope;

/** What a route's scope (routes.ts) asks for under `config`. */
export function requirementOf(
  scope: Scope,
  config: Pick<Config, 'metricsAuthRequired' | 'docsAuthRequired'>,
): Requirement {
  if (scope === 'metricsAuth') return config.metricsAuthRequired ? 'ingest' : 'open';
  if (scope === 'docsAuth') return config.docsAuthRequired ? 'ingest' : 'open';
  return scope;
}

/**
 * The key a request was let in with, when it sent one; set by accessControl, so undefined too when
 * AUTH_REQUIRED=false. For a route that shows an admin more than others (/v1/stats).
 */
export function principalOf(res: Response): ApiKeyPrincipal | undefined {
  return res.locals.apiKeyPrincipal as ApiKeyPrincipal | undefined;
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
  readonly rateLimiter?: TokenBucketLimiter<number>;
  /** Lookups of keys not in the cache, per client address group (address-group.ts). */
  readonly lookupBudget?: TokenBucketLimiter<string>;
}

/** Client addresses whose lookup budgets are kept at most; the least recently seen are forgotten first. */
const LOOKUP_BUDGET_ADDRESSES = 10_000;

/** The key check of one route (or, with `keyOptional`, of a route that shows more to a key). */
export type AccessCheck = (needed: Requirement, keyOptional?: boolean) => RequestHandler;

/**
 * The key check that app.ts puts before each route when AUTH_REQUIRED=true, and before the answer to
 * a request no route took (which needs an admin key: default deny, so a route added later is protected
 * until its scope says otherwise): 401 without a valid key, 403 when the key's scope is too small, 429
 * past the key's rate limit. A request is checked once, by the first check it meets. Answers never
 * repeat the key; the log line of the request names the key, never shows it.
 */
export function accessControl({ authenticator, rateLimiter, lookupBudget }: AccessControlOptions): AccessCheck {
  return (needed, keyOptional = false) =>
    async (req, res, next) => {
      if (res.locals.accessChecked === true) return next();
      res.locals.accessChecked = true;
      const header = req.headers.authorization;
      const keySent = header !== undefined && header !== '';
      if (needed === 'open' && !(keySent && keyOptional)) return next();

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

      nameApiKey(req, principal.name);
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
        throw new AppError('overloaded', 'this API key is over its rate limit (RATE_LIMIT_PER_KEY_RPS)', {
          retryAfterSeconds: decision.retryAfterSeconds,
        });
      }
      next();
    };
}

/**
 * The access control that `config` asks for and the authenticator it uses (for api-key-changes.ts to
 * tell of changes), or undefined when AUTH_REQUIRED=false (everything open).
 */
export function accessControlFor(
  config: Config,
  pool: Pool,
  logger: Logger,
): { forRoute: (route: RouteAccess) => RequestHandler; authenticator: ApiKeyAuthenticator } | undefined {
  if (!config.authRequired) return undefined;
  const authenticator = new ApiKeyAuthenticator({
    lookup: (keyHash) => findActiveApiKey(pool, keyHash),
    ttlMs: config.authCacheTtlMs,
    logger,
    maxConcurrentLookups: config.authLookupConcurrency,
  });
  const check = accessControl({
    authenticator,
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
  const forRoute = (route: RouteAccess): RequestHandler => check(requirementOf(route.scope, config), route.keyOptional);
  return { forRoute, authenticator };
}
