// Upload-Metadata (comma-separated `key base64value` pairs): the keys the server keeps there for itself,
// and what a client is shown and may send.

/** The metadata key under which an upload's owner is kept with it (set by us; never shown to clients). */
export const OWNER_METADATA_KEY = 'userId';
/** The metadata key under which a linked upload keeps its file's id (set by us; shown as FILE_ID_HEADER). */
export const FILE_METADATA_KEY = 'fileId';
/**
 * The metadata key under which a complete upload keeps the SHA-1 computed from its bytes (set by us),
 * so linking again after a refusal (a name taken) does not hash every byte again.
 */
export const SHA1_METADATA_KEY = 'contentSha1';
/** The server's own metadata keys: whatever a client sends under them is not kept, and HEAD hides them. */
export const SERVER_METADATA_KEYS: readonly string[] = [OWNER_METADATA_KEY, FILE_METADATA_KEY, SHA1_METADATA_KEY];

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The first of `keys` whose base64 value in an Upload-Metadata header is not UTF-8. @tus/server decodes
 * such bytes to U+FFFD, so the name stored would not be the name sent; it is refused instead.
 */
export function notUtf8(header: string, keys: string[]): string | undefined {
  for (const { key, value } of pairsOf(header)) {
    if (!keys.includes(key)) continue;
    try {
      UTF8.decode(Buffer.from(value, 'base64'));
    } catch {
      return key;
    }
  }
  return undefined;
}

/**
 * An Upload-Metadata value (comma-separated `key base64value` pairs) as the client sent it: without the
 * server's own pairs. The linked file's id is shown as a header instead.
 */
export function clientMetadata(metadata: string): { metadata: string; fileId: string | null } {
  let fileId: string | null = null;
  const pairs = pairsOf(metadata).filter(({ key, value }) => {
    if (key === FILE_METADATA_KEY) fileId = Buffer.from(value, 'base64').toString();
    return !SERVER_METADATA_KEYS.includes(key);
  });
  return { metadata: pairs.map(({ pair }) => pair).join(','), fileId };
}

/** Each `key base64value` pair of an Upload-Metadata value, as sent and split. */
function pairsOf(header: string): Array<{ pair: string; key: string; value: string }> {
  return header.split(',').map((pair) => {
    const [key = '', value = ''] = pair.trim().split(' ');
    return { pair, key, value };
  });
}
