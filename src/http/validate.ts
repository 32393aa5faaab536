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
