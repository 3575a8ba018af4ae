import type { RequestHandler } from 'express';
import helmet from 'helmet';

/**
 * The headers every answer carries, set by helmet in one middleware before any route: the policy for
 * data (JSON, Prometheus text), where nothing may load and nothing may frame the answer. The pages
 * (the status page, /docs) replace the Content-Security-Policy with their own.
 *
 * No Strict-Transport-Security: the gateway speaks plain HTTP (loopback, or behind a proxy), where
 * browsers ignore it; HSTS belongs to whatever terminates TLS, which alone knows that HTTPS is served.
 */
/**
 * The policy of our pages (the status page, /docs): scripts, styles and images from this gateway
 * only, nothing inline (Swagger UI needs no 'unsafe-inline'), requests to this gateway only.
 */
export function pageSecurityPolicy(): RequestHandler {
  return helmet.contentSecurityPolicy({
    useDefaults: false,
    directives: {
      defaultSrc: ["'none'"],
      scriptSrc: ["'self'"],
      styleSrc: ["'self'"],
      imgSrc: ["'self'", 'data:'],
      connectSrc: ["'self'"],
      baseUri: ["'none'"],
      formAction: ["'none'"],
      frameAncestors: ["'none'"],
    },
  }) as RequestHandler;
}

/**
 * The headers every answer carries. helmet works them out per request; they never change, so they are
 * worked out once here (helmet run against a recording response) and only set on each answer.
 */
export function securityHeaders(): RequestHandler {
  const headers = headersSetBy(dataSecurityHeaders());
  return (_req, res, next) => {
    for (const [name, value] of headers) res.setHeader(name, value);
    next();
  };
}

/** The headers `middleware` sets when it needs nothing from the request. */
function headersSetBy(middleware: RequestHandler): [string, string][] {
  const headers = new Map<string, string>();
  const recorder = {
    setHeader: (name: string, value: unknown) => headers.set(name, String(value)),
    removeHeader: (name: string) => headers.delete(name),
  };
  let called = false;
  middleware({} as never, recorder as never, (error?: unknown) => {
    if (error !== undefined) throw error;
    called = true;
  });
  if (!called) throw new Error('the security headers middleware did not finish at once');
  return [...headers];
}

function dataSecurityHeaders(): RequestHandler {
  return helmet({
    contentSecurityPolicy: { useDefaults: false, directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } },
    xContentTypeOptions: true,
    xFrameOptions: { action: 'deny' },
    referrerPolicy: { policy: 'no-referrer' },
    crossOriginResourcePolicy: { policy: 'same-origin' },
    crossOriginOpenerPolicy: { policy: 'same-origin' },
    strictTransportSecurity: false,
    // Headers for old browsers and plug-ins (IE, Flash) or for pages only: bytes on every answer for nothing.
    crossOriginEmbedderPolicy: false,
    originAgentCluster: false,
    xDnsPrefetchControl: false,
    xDownloadOptions: false,
    xPermittedCrossDomainPolicies: false,
    xXssProtection: false,
    // app.disable('x-powered-by') already.
    xPoweredBy: false,
  }) as RequestHandler;
}
