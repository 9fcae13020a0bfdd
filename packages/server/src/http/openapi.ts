import type { FastifyInstance } from 'fastify';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { errorCatalogueTable } from '@fieldsync/protocol/errors';
import { sharedSchemas } from './schemas.js';

/**
 * The OpenAPI document at `/docs/json` and its UI at `/docs`, generated from the route
 * schemas; shared schemas (the error envelope) become named components. Register before the
 * routes.
 */
export async function registerOpenApi(app: FastifyInstance, opts: { version: string }): Promise<void> {
  for (const schema of sharedSchemas) app.addSchema(schema);
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'Fieldsync API',
        version: opts.version,
        description: `Offline-first sync backend for mobile sales teams.\n\nEvery failure is the \`ErrorEnvelope\`; its \`error\` is one of these codes:\n\n${errorCatalogueTable()}`,
      },
      components: {
        securitySchemes: {
          apiKey: { type: 'apiKey', in: 'header', name: 'X-API-Key' },
          bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' },
        },
      },
    },
    // Shared schemas are components under their own id (`ErrorEnvelope`), not `def-0`.
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`) },
  });
  await app.register(swaggerUi, { routePrefix: '/docs', uiConfig: { docExpansion: 'list' } });
}
