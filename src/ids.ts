/** Ids we hand out are lowercase UUIDs; anything else can be answered 404 without a query. */
export const isId = (value: string): boolean => /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(value);
