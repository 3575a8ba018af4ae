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

export function securityHeaders(): RequestHandler {
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
