/** What the file source reads of objects before they are normalized. */

/** `namespace/name` of every Service object in `objects` (Lists opened), valid or not. */
export function serviceKeysIn(objects: unknown[]): Set<string> {
  const keys = new Set<string>();
  const visit = (o: unknown) => {
    if (typeof o !== 'object' || o === null) return;
    const x = o as { kind?: unknown; items?: unknown; metadata?: { name?: unknown; namespace?: unknown } };
    if (x.kind === 'List' && Array.isArray(x.items)) return x.items.forEach(visit);
    if (x.kind === 'Service' && typeof x.metadata?.name === 'string') keys.add(`${typeof x.metadata.namespace === 'string' ? x.metadata.namespace : 'default'}/${x.metadata.name}`);
  };
  objects.forEach(visit);
  return keys;
}
