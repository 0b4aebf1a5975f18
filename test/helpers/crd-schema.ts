/**
 * xlb's CustomResourceDefinitions (deploy/helm/xlb/crds/) and the check the
 * API server makes with them: an object is validated against the version's
 * `openAPIV3Schema` (OpenAPI v3 as JSON Schema draft 4/7 plus the
 * `x-kubernetes-*` extensions, Kubernetes docs "Extend the Kubernetes API
 * with CustomResourceDefinitions", "Validation"), and the schema's
 * `default`s are applied to absent fields ("Defaulting").
 *
 * Ajv stands in for the API server's validator: it checks types, required
 * fields, patterns, enums, lengths, counts and the formats Kubernetes knows
 * (`date-time`, `int64`, ...). It does not run CEL rules
 * (`x-kubernetes-validations`) nor check list types; xlb's CRDs do not rely
 * on either to reject bad input.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormatsImport from 'ajv-formats';

// ajv-formats is CommonJS with `exports.default`; under NodeNext the default import is the module object.
const addFormats = ((addFormatsImport as unknown as { default?: typeof addFormatsImport }).default ?? addFormatsImport) as unknown as (ajv: Ajv) => Ajv;

/** Where the CRDs live (Helm's convention: installed before the chart's templates). */
export const CRD_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../deploy/helm/xlb/crds');

/** The extensions of Kubernetes' structural schemas: keywords Ajv must accept without checking. */
export const KUBERNETES_KEYWORDS = [
  'x-kubernetes-list-type',
  'x-kubernetes-list-map-keys',
  'x-kubernetes-map-type',
  'x-kubernetes-validations',
  'x-kubernetes-preserve-unknown-fields',
  'x-kubernetes-int-or-string',
  'x-kubernetes-embedded-resource',
] as const;

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Json = Record<string, any>;

/** One CRD file, parsed. */
export interface CrdFile {
  file: string;
  crd: Json;
}

/** Every CRD in {@link CRD_DIR}, by file name order. */
export function loadCrds(): CrdFile[] {
  if (!fs.existsSync(CRD_DIR)) return [];
  return fs
    .readdirSync(CRD_DIR)
    .filter((f) => /\.ya?ml$/.test(f))
    .sort()
    .map((f) => ({ file: f, crd: parse(fs.readFileSync(path.join(CRD_DIR, f), 'utf8')) as Json }));
}

/** An Ajv set up as the API server checks custom resources. */
export function kubernetesAjv(opts: { useDefaults?: boolean } = {}): Ajv {
  const ajv = new Ajv({ allErrors: true, strict: true, useDefaults: opts.useDefaults ?? false });
  addFormats(ajv);
  ajv.addVocabulary([...KUBERNETES_KEYWORDS]);
  return ajv;
}

/** A validator of one CRD's storage version: errors as `path: message` lines (none: valid). */
export interface CrValidator {
  plural: string;
  kind: string;
  /** Validate (and, with `useDefaults`, default in place) an object of this kind. */
  check(obj: unknown): string[];
}

/** The validator of the CRD whose plural is `plural`; undefined when there is none. */
export function crValidator(plural: string, opts: { useDefaults?: boolean } = {}): CrValidator | undefined {
  const entry = loadCrds().find((c) => c.crd.spec?.names?.plural === plural);
  if (!entry) return undefined;
  const version = (entry.crd.spec.versions as Json[]).find((v) => v.storage) ?? entry.crd.spec.versions[0];
  const validate: ValidateFunction = kubernetesAjv(opts).compile(version.schema.openAPIV3Schema);
  return {
    plural,
    kind: entry.crd.spec.names.kind,
    check(obj) {
      if (validate(obj)) return [];
      return (validate.errors ?? []).map((e) => `${e.instancePath.replace(/^\//, '').replace(/\//g, '.') || '(root)'}: ${e.message}`);
    },
  };
}
