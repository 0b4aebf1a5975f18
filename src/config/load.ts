/**
 * Loading the agent's configuration file: read, parse YAML, validate with
 * {@link ConfigSchema}, fill defaults, resolve relative paths against the
 * file's directory. Every problem is reported at once, each as
 * `key.path: message (got VALUE)`.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseDocument } from 'yaml';
import { ConfigSchema, type Config } from './schema.js';
import { formatConfigIssues } from './zod-errors.js';

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

/**
 * Read and validate the configuration file at `file` (YAML, one document),
 * with the command line's `overrides` applied. Without a file, the
 * configuration is the overrides and the defaults.
 * @returns the configuration with defaults filled and paths absolute
 * @throws ConfigError naming the file: unreadable, YAML syntax error (with
 *   line and column), or every schema problem as `key.path: message (got VALUE)`
 */
export function loadConfig(file: string | undefined, overrides: ConfigOverrides = {}): Config {
  if (file === undefined) return parseConfig(applyOverrides(undefined, overrides), process.cwd(), '(command line)');
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
  return parseConfig(applyOverrides(doc.toJS(), overrides), path.dirname(path.resolve(file)), file);
}
