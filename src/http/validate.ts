import { isUtf8 } from 'node:buffer';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { z } from 'zod';
import { AppError } from '../errors.js';

/** Parses untrusted input with a zod schema; the first problem becomes a 400 naming the field. */
export function parseInput<S extends z.ZodType>(schema: S, input: unknown): z.infer<S> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const field = issue.path.join('.');
  throw new AppError('invalid_input', field ? `${field}: ${issue.message}` : issue.message);
}

/**
 * The JSON parser's `verify`: a body in UTF-8 whose bytes are not UTF-8 is refused (400 invalid_input).
 * The parser decodes leniently, so a stray byte in a name became U+FFFD and the file was stored under
 * another name than the one sent (multipart and tus refuse it too). Only UTF-8 is checked: the charset
 * every JSON client sends, and the default when none is declared.
 */
export function refuseBrokenUtf8(_req: IncomingMessage, _res: ServerResponse, body: Buffer, encoding: string): void {
  if (/^utf-?8$/i.test(encoding) && !isUtf8(body)) throw new Error('the JSON body is not valid UTF-8');
}
