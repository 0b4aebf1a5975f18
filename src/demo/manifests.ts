/**
 * Edits of a manifests file as a person would make them with an editor:
 * parse, change the EndpointSlices of one service, write to a temporary file
 * and rename it into place (so a watcher never reads half a file).
 */
import fs from 'node:fs';
import { parseAllDocuments, stringify } from 'yaml';

interface Obj {
  kind?: string;
  metadata?: { name?: string; namespace?: string; labels?: Record<string, string> };
  endpoints?: Array<{ addresses: string[]; nodeName?: string; conditions?: Record<string, boolean>; targetRef?: Record<string, string> }>;
  items?: Obj[];
}

/**
 * Remove endpoints by address from, and add endpoints to, the EndpointSlices
 * of service `namespace/name` in `file` (a List or multi-document YAML).
 * Additions go to the service's first slice.
 * @throws Error when the service has no EndpointSlice in the file
 */
export function editEndpoints(
  file: string,
  namespace: string,
  name: string,
  change: { remove?: string[]; add?: Array<{ ip: string; nodeName: string; pod: string }> },
): void {
  const docs = parseAllDocuments(fs.readFileSync(file, 'utf8')).map((d) => d.toJS() as Obj);
  const objects = docs.flatMap((d) => (d?.kind === 'List' ? (d.items ?? []) : [d]));
  const slices = objects.filter(
    (o) => o?.kind === 'EndpointSlice' && (o.metadata?.namespace ?? 'default') === namespace && o.metadata?.labels?.['kubernetes.io/service-name'] === name,
  );
  if (!slices.length) throw new Error(`${file}: no EndpointSlice for service ${namespace}/${name}`);
  const remove = new Set(change.remove ?? []);
  for (const s of slices) s.endpoints = (s.endpoints ?? []).filter((e) => !e.addresses.some((a) => remove.has(a)));
  for (const a of change.add ?? []) {
    slices[0].endpoints!.push({
      addresses: [a.ip],
      nodeName: a.nodeName,
      conditions: { ready: true, serving: true, terminating: false },
      targetRef: { kind: 'Pod', namespace, name: a.pod },
    });
  }
  const text = docs.map((d) => stringify(d)).join('---\n');
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, file);
}

/**
 * Replace the objects of a manifests file: `edit` gets every object (Lists
 * flattened) and returns the new set, written as one v1 List (atomically).
 */
export function editObjects(file: string, edit: (objects: Array<Record<string, any>>) => Array<Record<string, unknown>>): void { // eslint-disable-line @typescript-eslint/no-explicit-any
  const docs = parseAllDocuments(fs.readFileSync(file, 'utf8')).map((d) => d.toJS() as Obj);
  const objects = docs.flatMap((d) => (d?.kind === 'List' ? (d.items ?? []) : [d])).filter(Boolean) as Array<Record<string, unknown>>;
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, stringify({ apiVersion: 'v1', kind: 'List', metadata: { resourceVersion: '' }, items: edit(objects) }));
  fs.renameSync(tmp, file);
}
