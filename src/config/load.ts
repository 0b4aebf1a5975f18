/**
 * Loading the agent's configuration file: read, parse YAML, validate with
 * {@link ConfigSchema}, fill defaults, resolve relative paths against the
 * file's directory. Every problem is reported at once, each as
 * `key.path: message (got VALUE)`.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseDocument } from 'yaml';
import { ConfigSchema, DNS_SUBDOMAIN, type Config } from './schema.js';
import { formatConfigIssues } from './zod-errors.js';
import type { ConfigDiscovery } from './discover.js';

/** The configuration cannot be used. `problems` holds one line per problem. */
export class ConfigError extends Error {
  constructor(
    /** The configuration file. */
    readonly file: string,
    /** `key.path: message (got VALUE)` lines (or `FILE:LINE:COL: ...` for syntax errors). */
    readonly problems: string[],
  ) {
    super(`invalid configuration ${file}:\n${problems.map((p) => `  ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/**
 * Validate a parsed configuration object.
 * @param baseDir relative paths (source file, kubeconfig, objectDir, unix
 *   socket) resolve against it
 * @param file names the configuration in errors
 * @throws ConfigError listing every problem
 */
export function parseConfig(raw: unknown, baseDir: string, file = '<config>'): Config {
  const r = ConfigSchema.safeParse(raw, { reportInput: true });
  if (!r.success) throw new ConfigError(file, formatConfigIssues(r.error.issues));
  const c = r.data;
  const abs = (p: string) => path.resolve(baseDir, p);
  if (c.source.file) c.source.file.path = abs(c.source.file.path);
  if (c.source.kubernetes?.kubeconfig) c.source.kubernetes.kubeconfig = abs(c.source.kubernetes.kubeconfig);
  if (c.datapath.objectDir !== null) c.datapath.objectDir = abs(c.datapath.objectDir);
  if (c.api.listen.startsWith('unix:')) c.api.listen = `unix:${abs(c.api.listen.slice('unix:'.length))}`;
  return c;
}

/**
 * What the command line may set over the file (`xlb agent --node-name
 * --kubeconfig --interfaces`): the DaemonSet passes the node's name this way,
 * and `--kubeconfig` alone is enough to follow an API server.
 *
 * - `nodeName` sets `node.name`.
 * - `kubeconfig` sets `source` to `{ kubernetes: { kubeconfig } }`, replacing
 *   whatever source the file names (relative to the working directory).
 * - `interfaces` sets `interfaces`.
 */
export interface ConfigOverrides {
  nodeName?: string;
  kubeconfig?: string;
  interfaces?: string[];
}

/** `raw` (a parsed YAML document, or undefined for none) with `o` applied. */
function applyOverrides(raw: unknown, o: ConfigOverrides): unknown {
  if (!o.nodeName && !o.kubeconfig && !o.interfaces) return raw;
  const c: Record<string, unknown> = raw && typeof raw === 'object' && !Array.isArray(raw) ? { ...(raw as Record<string, unknown>) } : {};
  if (o.nodeName !== undefined) {
    const node = c.node && typeof c.node === 'object' ? (c.node as Record<string, unknown>) : {};
    c.node = { ...node, name: o.nodeName };
  }
  if (o.kubeconfig !== undefined) c.source = { kubernetes: { kubeconfig: path.resolve(o.kubeconfig) } };
  if (o.interfaces !== undefined) c.interfaces = o.interfaces;
  return c;
}

/** What {@link applyDiscovery} filled in, for the agent's log. */
export interface Discovered {
  nodeName?: string;
  interfaces?: string[];
}

/**
 * `raw` with `node.name` and `interfaces` taken from `d` where it leaves
 * them out. A discovery that fails, or finds no interface, is a problem
 * naming the key and how to set it; what it finds is checked by the schema
 * as if it had been written.
 */
function applyDiscovery(raw: unknown, d: ConfigDiscovery, found: Discovered, problems: string[]): unknown {
  if (raw !== undefined && (raw === null || typeof raw !== 'object' || Array.isArray(raw))) return raw; // the schema names it
  const c: Record<string, unknown> = { ...((raw as Record<string, unknown> | undefined) ?? {}) };
  const node = c.node && typeof c.node === 'object' && !Array.isArray(c.node) ? (c.node as Record<string, unknown>) : undefined;
  if ((c.node === undefined || node) && node?.name === undefined) {
    const name = d.nodeName();
    if (name.length > 253 || !DNS_SUBDOMAIN.test(name)) {
      problems.push(`node.name: left out, and the host name ${JSON.stringify(name)} is not a node name (DNS-1123 subdomain: lower-case letters, digits, "-", "."); set it (--node-name, XLB_NODE_NAME)`);
    } else {
      found.nodeName = name;
      c.node = { ...(node ?? {}), name };
    }
  }
  if (c.interfaces === undefined) {
    let names: string[] = [];
    try {
      names = d.interfaces();
    } catch (e) {
      problems.push(`interfaces: left out, and the default routes could not be read (${(e as Error).message}); list the external interfaces (--interfaces, XLB_INTERFACES)`);
      return c;
    }
    if (!names.length) {
      problems.push('interfaces: left out, and this network namespace has no IPv4 default route to take them from; list the external interfaces (--interfaces, XLB_INTERFACES)');
      return c;
    }
    found.interfaces = names;
    c.interfaces = names;
  }
  return c;
}

/** Options of {@link loadConfig}. */
export interface LoadOptions {
  /**
   * Where `node.name` and `interfaces` come from when neither the file nor
   * the overrides give them (`xlb agent` passes hostDiscovery of
   * discover.ts). Without it, leaving them out is an error.
   */
  discovery?: ConfigDiscovery;
  /** Filled with what the discovery supplied. */
  discovered?: Discovered;
}

/**
 * Read and validate the configuration file at `file` (YAML, one document),
 * with the command line's `overrides` applied, then `opts.discovery` for
 * what is still left out. Without a file, the configuration is the
 * overrides, the discovery and the defaults.
 * @returns the configuration with defaults filled and paths absolute
 * @throws ConfigError naming the file: unreadable, YAML syntax error (with
 *   line and column), a discovery that found nothing, or every schema
 *   problem as `key.path: message (got VALUE)`
 */
export function loadConfig(file: string | undefined, overrides: ConfigOverrides = {}, opts: LoadOptions = {}): Config {
  const complete = (raw: unknown, baseDir: string, name: string): Config => {
    if (!opts.discovery) return parseConfig(raw, baseDir, name);
    const problems: string[] = [];
    const filled = applyDiscovery(raw, opts.discovery, opts.discovered ?? {}, problems);
    if (problems.length) throw new ConfigError(name, problems);
    return parseConfig(filled, baseDir, name);
  };
  if (file === undefined) return complete(applyOverrides(undefined, overrides), process.cwd(), '(command line)');
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new ConfigError(file, [`cannot read: ${err.code ?? err.message}`]);
  }
  const doc = parseDocument(text, { prettyErrors: true });
  const problems = [...doc.errors, ...doc.warnings];
  if (problems.length) {
    throw new ConfigError(
      file,
      problems.map((e) => {
        const pos = e.linePos?.[0];
        const reason = e.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '');
        return pos ? `${file}:${pos.line}:${pos.col}: ${reason}` : `${file}: ${reason}`;
      }),
    );
  }
  return complete(applyOverrides(doc.toJS(), overrides), path.dirname(path.resolve(file)), file);
}
