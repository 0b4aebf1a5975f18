/**
 * Parsing of a manifests file: YAML with one or more documents (`---`), a
 * `List` (what `kubectl get -o yaml` prints), or JSON (parsed by the same
 * YAML 1.2 parser: JSON is a subset of YAML 1.2, and errors then carry a
 * line and column too). A document may also be a plain sequence of objects.
 */
import { parseAllDocuments, LineCounter, isSeq, type YAMLError } from 'yaml';

/**
 * The file could not be read or parsed; nothing of it was used.
 * `message` is `FILE:LINE:COLUMN: what` when the position is known.
 */
export class ManifestError extends Error {
  constructor(
    message: string,
    /** The file, as the source was given it. */
    readonly file: string,
    /** 1-based line of the (first) error, when known. */
    readonly line?: number,
    /** 1-based column, when known. */
    readonly column?: number,
  ) {
    super(message);
    this.name = 'ManifestError';
  }
}

/** Objects of a manifests file, each with the line where it starts. */
export interface ParsedManifests {
  /** Top-level objects, in file order (`List`s not yet expanded; empty documents are null). */
  objects: unknown[];
  /** `FILE:LINE` of each entry of `objects`, for issues about unnamed objects. */
  positions: string[];
}

function fromYamlError(file: string, e: YAMLError, what: string): ManifestError {
  const pos = e.linePos?.[0];
  // yaml's pretty message repeats the position and adds a snippet: keep the reason.
  const reason = e.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '');
  const where = pos ? `${file}:${pos.line}:${pos.col}` : file;
  return new ManifestError(`${where}: ${what}: ${reason}`, file, pos?.line, pos?.col);
}

/**
 * Parse the text of a manifests file.
 *
 * Any YAML error or warning (bad indentation, duplicate key, unknown tag) in
 * any document rejects the whole file: a half-saved edit must not remove the
 * objects after the error.
 *
 * @param file the file name, used in messages and positions
 * @throws ManifestError naming the file, line and column of the first problem
 */
export function parseManifests(text: string, file: string): ParsedManifests {
  // JSON (`kubectl get -o json`, generated files) through JSON.parse: the
  // YAML parser takes ~2 s and over a GB of memory for 10,000 services, JSON
  // 0.2 s. What JSON.parse refuses goes through the YAML parser below, which
  // names the line and column of the problem. (JSON.parse keeps the last of
  // duplicate keys where YAML refuses them.)
  const first = text.match(/^\s*([[{])/)?.[1];
  if (first) {
    let js: unknown;
    try {
      js = JSON.parse(text);
    } catch {
      js = undefined;
    }
    if (js !== undefined) {
      const objects = Array.isArray(js) ? js : [js];
      return { objects, positions: objects.map((_, i) => (Array.isArray(js) ? `${file}: item ${i}` : `${file}:1`)) };
    }
  }
  const lineCounter = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter, prettyErrors: true });
  const objects: unknown[] = [];
  const positions: string[] = [];
  for (const doc of docs) {
    const problem = doc.errors[0] ?? doc.warnings[0];
    if (problem) throw fromYamlError(file, problem, doc.errors.length ? 'YAML syntax error' : 'YAML warning treated as an error');
    let js: unknown;
    try {
      js = doc.toJS({ maxAliasCount: 100 });
    } catch (e) {
      const start = doc.contents?.range?.[0] ?? 0;
      const line = lineCounter.linePos(start).line;
      throw new ManifestError(`${file}:${line}: cannot convert document: ${(e as Error).message}`, file, line);
    }
    const lineAt = (offset: number | undefined) => `${file}:${lineCounter.linePos(offset ?? 0).line}`;
    if (Array.isArray(js) && isSeq(doc.contents)) {
      const items = doc.contents.items as Array<{ range?: [number, number, number] } | null>;
      js.forEach((o, i) => {
        objects.push(o);
        positions.push(lineAt(items[i]?.range?.[0]));
      });
    } else {
      objects.push(js);
      positions.push(lineAt(doc.contents?.range?.[0]));
    }
  }
  return { objects, positions };
}

/** The object an explicit "remove every service" is written as. */
const EMPTY_LIST_HINT = 'to remove every service, write an empty List: {"apiVersion": "v1", "kind": "List", "items": []}';

/**
 * Refuse a file that holds no Kubernetes object at all: empty, blank, only
 * comments or `---`, `null`, or a scalar (random bytes that YAML reads as
 * one string or number). Such a file is far more often a half-written or
 * truncated one than a wish to remove every service, which is said with an
 * empty `List`.
 * @throws ManifestError naming the file and what it holds
 */
export function checkHasManifests(parsed: ParsedManifests, file: string): void {
  const present = parsed.objects.filter((o) => o !== null && o !== undefined);
  if (!present.length) throw new ManifestError(`${file}: no manifests in the file (it is empty, blank, only comments or document markers, or null); ${EMPTY_LIST_HINT}`, file);
  if (!present.some((o) => typeof o === 'object' && !Array.isArray(o))) {
    const first = present[0];
    const what = Array.isArray(first) ? 'a list of lists' : typeof first === 'string' ? `the text ${JSON.stringify(first.length > 40 ? `${first.slice(0, 40)}...` : first)}` : `a ${typeof first}`;
    throw new ManifestError(`${file}: not a manifests file: it holds no Kubernetes object (it holds ${what}); ${EMPTY_LIST_HINT}`, file);
  }
}

/**
 * The text of a manifests file's bytes, which must be UTF-8 (YAML 1.2 and
 * JSON are; a replacement character would change a name silently).
 * @throws ManifestError naming the line of the first byte that is not
 */
export function decodeManifests(bytes: Buffer, file: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    const loose = bytes.toString('utf8');
    const at = loose.indexOf('\uFFFD');
    const line = at < 0 ? undefined : loose.slice(0, at).split('\n').length;
    throw new ManifestError(`${file}${line ? `:${line}` : ''}: not UTF-8: the file has a byte sequence that is not valid UTF-8${line ? ` on line ${line}` : ''}`, file, line);
  }
}
