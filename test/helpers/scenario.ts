/**
 * One scenario of test/scenarios (see scenarios.test.ts there): its
 * input.yaml through the agent's file-source path without a kernel
 * (FileSource → ServiceController → FakeLBMaps), rendered as the text
 * of its expected.txt.
 */
import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { parse as parseYaml } from 'yaml';
import type { Logger } from 'pino';
import { FileSource } from '../../src/sources/file/index.js';
import type { Snapshot } from '../../src/sources/source.js';
import { ServiceController, type ServiceView } from '../../src/services/controller.js';
import { FakeLBMaps } from '../../src/datapath/lbmaps.js';
import { enums } from '../../src/datapath/codec.js';
import { DEFAULT_BACKEND_MULTIPLIER, MAX_MAGLEV_TABLE_SIZE, MIN_MAGLEV_TABLE_SIZE } from '../../src/maglev/index.js';
import type { InputIssue, NodeInfo } from '../../src/model/types.js';
import { ipToU32 } from '../../src/util/ip.js';

/** The agent's Maglev sizing when datapath.maglev is not configured (src/config/schema.ts defaults). */
const SIZING = { minTableSize: MIN_MAGLEV_TABLE_SIZE, maxTableSize: MAX_MAGLEV_TABLE_SIZE, backendMultiplier: DEFAULT_BACKEND_MULTIPLIER };

const quiet = { debug() {}, info() {}, warn() {}, error() {} } as unknown as Logger;

/**
 * The node of a scenario, from the line `# node: {name: ..., addresses: [...], labels: {...}}`
 * of its input.yaml (a YAML flow mapping in a comment: the file source skips it).
 * @throws Error when the line is missing or incomplete
 */
export function scenarioNode(text: string, file: string): NodeInfo {
  const line = /^# node: (.+)$/m.exec(text);
  if (!line) throw new Error(`${file}: no "# node: {name: ..., addresses: [...]}" line`);
  const n = parseYaml(line[1]) as Partial<NodeInfo>;
  if (typeof n?.name !== 'string' || !Array.isArray(n.addresses)) throw new Error(`${file}: the node line needs name and addresses`);
  return { name: n.name, addresses: n.addresses.map(String), labels: n.labels ?? {} };
}

/** The manifests of `file` as the agent's file source delivers its first snapshot. */
async function readSnapshot(file: string): Promise<Snapshot> {
  let snap: Snapshot | undefined;
  const source = new FileSource(file, quiet);
  await source.start((s) => (snap = s));
  await source.stop();
  if (!snap) throw new Error(`${file}: the file source delivered no snapshot`);
  return snap;
}

const PROTO: Record<number, string> = { 6: 'TCP', 17: 'UDP' };

/** `XLB_SVC_F_EXT_LOCAL | XLB_SVC_F_AFFINITY` as `affinity,ext-local`; 0 as `none`. */
function flagNames(flags: number, names: Record<string, number>, prefix: string): string {
  const out: string[] = [];
  let rest = flags;
  for (const [name, bit] of Object.entries(names)) {
    if (!name.startsWith(prefix) || !(flags & bit)) continue;
    out.push(name.slice(prefix.length).toLowerCase().replaceAll('_', '-'));
    rest &= ~bit;
  }
  if (rest) out.push(`0x${rest.toString(16)}`);
  return out.length ? out.join(',') : 'none';
}

const ref = (kind: 'svc' | 'be', id: number | undefined): string => (id ? `${kind}#${id}` : '-');

/**
 * Run the scenario in `dir` and render its dump (see scenarios.test.ts for
 * the format). Deterministic: IDs follow from the input alone.
 */
export async function runScenario(dir: string): Promise<string> {
  const file = path.resolve(dir, 'input.yaml');
  const text = fs.readFileSync(file, 'utf8');
  const node = scenarioNode(text, file);
  const snap = await readSnapshot(file);
  const maps = new FakeLBMaps();
  const controller = new ServiceController(maps, node, SIZING);
  const result = controller.sync(snap.state, snap.issues);
  const views = controller.services();

  // Names of IDs, from the controller's view.
  const svcName = new Map<number, string>();
  const beName = new Map<number, string>();
  for (const v of views) {
    if (v.serviceIds.cluster) svcName.set(v.serviceIds.cluster, `${v.key} cluster`);
    if (v.serviceIds.local) svcName.set(v.serviceIds.local, `${v.key} local`);
    for (const b of v.backends) if (b.id) beName.set(b.id, v.key);
  }
  const portOf = (...ids: Array<number | undefined>): string => {
    for (const id of ids) if (id && svcName.has(id)) return svcName.get(id)!.split(' ')[0];
    return '?';
  };
  const weights = new Map(controller.desiredServices().flatMap((d) => d.backends.map((b) => [`${d.key}|${b.addr}:${b.port}`, b.weight])));

  const out: string[] = [];
  out.push(`# ${path.basename(dir)}: what xlb programs for input.yaml. Generated: XLB_UPDATE_SCENARIOS=1 node --import tsx --test test/scenarios/scenarios.test.ts`);
  const labels = Object.entries(node.labels ?? {}).map(([k, v]) => `${k}=${v}`);
  out.push(`node ${node.name} addresses=${node.addresses.join(',')}${labels.length ? ` labels=${labels.join(',')}` : ''}`);

  out.push('', '## service ports (controller view): IDs of the cluster and local sets, topology, endpoints with state and sets');
  for (const v of views) out.push(...portLines(v, weights));
  if (!views.length) out.push('(none)');

  out.push('', '## xlb_frontends: address:port/protocol -> service port, outside ID (XDP), inside ID (pods, node), flags');
  const frontends = [...maps.frontends.values()].sort((a, b) => ipToU32(a.key.addr) - ipToU32(b.key.addr) || a.key.port - b.key.port || a.key.proto - b.key.proto);
  for (const { key, service: s } of frontends) {
    const timeout = s.affinity_timeout !== undefined ? ` timeout=${s.affinity_timeout}` : '';
    out.push(
      `frontend ${key.addr}:${key.port}/${PROTO[key.proto] ?? key.proto} -> ${portOf(s.id, s.internal_id)} outside=${ref('svc', s.id)} inside=${ref('svc', s.internal_id)} flags=${flagNames(s.flags, enums.xlb_service_flags, 'XLB_SVC_F_')}${timeout}`,
    );
  }
  if (!frontends.length) out.push('(none)');

  out.push('', '## xlb_backends: backend ID -> address:port/protocol, service port, owning service ID, flags');
  const backends = [...maps.backends.entries()].sort((a, b) => a[0] - b[0]);
  for (const [id, b] of backends) {
    out.push(`backend be#${id} ${b.addr}:${b.port}/${PROTO[b.proto] ?? b.proto} -> ${beName.get(id) ?? '?'} owner=${ref('svc', b.service_id)} flags=${flagNames(b.flags, enums.xlb_backend_flags, 'XLB_BE_F_')}`);
  }
  if (!backends.length) out.push('(none)');

  out.push('', '## xlb_maglev: service ID -> table size M, slots per backend ID, digest of the whole table');
  const tables = [...maps.tables.entries()].sort((a, b) => a[0] - b[0]);
  for (const [id, table] of tables) {
    const slots = new Map<number, number>();
    for (const be of table) slots.set(be, (slots.get(be) ?? 0) + 1);
    const counts = [...slots.entries()].sort((a, b) => a[0] - b[0]).map(([be, n]) => `be#${be}=${n}`);
    const digest = createHash('sha256').update(Buffer.from(table.buffer, table.byteOffset, table.byteLength)).digest('hex').slice(0, 12);
    out.push(`maglev svc#${id} (${svcName.get(id) ?? '?'}) M=${table.length} ${counts.join(' ')} sha256=${digest}`);
  }
  if (!tables.length) out.push('(none)');

  out.push('', '## xlb_source_ranges: service ID -> loadBalancerSourceRanges enforced on its flagged frontends');
  const ranges = [...maps.sourceRanges.entries()].sort((a, b) => a[0] - b[0]);
  for (const [id, cidrs] of ranges) out.push(`source-ranges svc#${id} (${svcName.get(id) ?? '?'}) ${cidrs.join(' ')}`);
  if (!ranges.length) out.push('(none)');

  out.push('', '## issues: object | field | message');
  const issues = result.issues.map((i) => issueLine(i, file)).sort();
  out.push(...(issues.length ? issues : ['(none)']));
  return `${out.join('\n')}\n`;
}

/** A port line and one line per endpoint. */
function portLines(v: ServiceView, weights: Map<string, number>): string[] {
  const s = v.settings;
  const extra = [s.topology ? `topology=${s.topology}` : '', s.healthCheckNodePort ? `healthCheckNodePort=${s.healthCheckNodePort}` : ''].filter(Boolean).join(' ');
  const lines = [`port ${v.key} ${v.protocol} cluster=${ref('svc', v.serviceIds.cluster)} local=${ref('svc', v.serviceIds.local)} has-endpoints=${s.hasAnyEndpoints ? 'yes' : 'no'}${extra ? ` ${extra}` : ''}`];
  for (const b of v.backends) {
    const sets = [b.inCluster ? 'cluster' : '', b.inLocal ? 'local' : ''].filter(Boolean).join(',') || 'none';
    const where = b.nodeName ? `node=${b.nodeName}${b.local ? '(local)' : ''}` : 'node=?';
    lines.push(`  endpoint ${ref('be', b.id)} ${b.addr}:${b.port} ${where} ${b.state} sets=${sets} weight=${weights.get(`${v.key}|${b.addr}:${b.port}`)}`);
  }
  return lines;
}

/** An issue on one line, with the scenario's absolute path made relative. */
function issueLine(i: InputIssue, file: string): string {
  const rel = (s: string) => s.replaceAll(file, 'input.yaml');
  return `issue ${rel(i.object)} | ${rel(i.field) || '-'} | ${rel(i.message)}`;
}
