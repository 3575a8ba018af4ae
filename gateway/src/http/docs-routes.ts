import express from 'express';
import path from 'node:path';
import { buildOpenApiDocument } from './openapi';
import type { RouteHandlers } from './routes';
import { pageSecurityPolicy } from './security-headers';

// The package's main module loads the whole bundle into Node; only its folder is needed.
const SWAGGER_UI_DIR = path.dirname(require.resolve('swagger-ui-dist/package.json'));

// The page and its script are ours; the rest (swagger-ui-bundle.js, swagger-ui.css, icons) is served
// from the swagger-ui-dist package, so the page works without network access. Paths are relative to
// /docs/, so the page also works behind a proxy that mounts the gateway under a prefix.
const DOCS_PAGE = `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <title>metrics-gateway API</title>
    <link rel="stylesheet" href="swagger-ui.css" />
    <link rel="icon" type="image/png" href="favicon-32x32.png" sizes="32x32" />
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="swagger-ui-bundle.js"></script>
    <script src="swagger-initializer.js"></script>
  </body>
</html>
`;

const DOCS_SCRIPT = `window.addEventListener('load', function () {
  window.ui = SwaggerUIBundle({
    url: '../openapi.json',
    dom_id: '#swagger-ui',
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: 'BaseLayout',
  });
});
`;

/** GET /openapi.json and the interactive page at GET /docs. */
export function docsRoutes() {
  const document = buildOpenApiDocument();
  return {
    openApiDocument: (_req, res) => {
      res.json(document);
    },
    // GET /docs comes here too: send it to /docs/ for the relative paths.
    docsPage: [
      pageSecurityPolicy(),
      (req, res) => {
        if (req.path === '/docs') {
          // Relative, so that /prefix/docs goes to /prefix/docs/ behind a proxy. The query is cut from the
          // target as sent: `new URL` would throw on an absolute-form target such as http://x:99999/docs.
          const query = req.originalUrl.indexOf('?');
          res.redirect(301, `docs/${query === -1 ? '' : req.originalUrl.slice(query)}`);
          return;
        }
        res.type('html').send(DOCS_PAGE);
      },
    ],
    // Replaces the package's own initializer, which points at a demo API on the internet.
    docsScript: (_req, res) => {
      res.type('js').send(DOCS_SCRIPT);
    },
    docsFiles: express.static(SWAGGER_UI_DIR, { index: false, redirect: false, maxAge: '1h' }),
  } satisfies RouteHandlers;
}
