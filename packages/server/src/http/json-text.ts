import type { FastifyReply } from 'fastify';

/**
 * Sends a body that is JSON text already (built from PostgreSQL's own JSON): Fastify sends a
 * string or bytes with a JSON content type as they are, without the route's serializer.
 */
export function sendJsonText(reply: FastifyReply, json: string | Buffer): FastifyReply {
  return reply.type('application/json; charset=utf-8').send(json);
}
