import fsp from 'node:fs/promises';

/** For `.catch`: a file or folder that does not exist (any more) is undefined; any other error stays one. */
export function ignoreMissing(error: NodeJS.ErrnoException): undefined {
  if (error.code === 'ENOENT') return undefined;
  throw error;
}

/** The names in folder `dir` (only those `only` matches), or none when the folder does not exist (yet). */
export async function namesIn(dir: string, only?: RegExp): Promise<string[]> {
  const names = (await fsp.readdir(dir).catch(ignoreMissing)) ?? [];
  return only ? names.filter((name) => only.test(name)) : names;
}
