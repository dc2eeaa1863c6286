/**
 * Synthesis helpers for the tests: every object a test synthesizes is validated against the upstream
 * schema of its kind, and a test fails on the first invalid one.
 *
 * Core kinds use the kubernetes-models package; custom resources (prometheus-operator, KEDA, Karpenter)
 * use ajv with the openAPIV3Schema of the very CRDs imported into imports/ (imports/crd-schemas.json).
 */
import Ajv, { ValidateFunction } from 'ajv';
import { Chart, Testing } from 'cdk8s';
import crdSchemas from '../../imports/crd-schemas.json';
import { InvalidPropError } from '../../src/validation';

/** One synthesized Kubernetes object. */
export interface Manifest {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: { name?: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  readonly [key: string]: any;
}

// CRD patterns are Go regular expressions; the only Go-only syntax in the imported schemas is the `(?i)` flag
// group (PrometheusRule's partialResponseStrategy: `^(?i)(abort|warn)?$`), which JavaScript spells as the `i` flag.
function goRegExp(source: string, flags?: string): RegExp {
  return source.includes('(?i)') ? new RegExp(source.replace(/\(\?i\)/g, ''), `${flags ?? ''}i`) : new RegExp(source, flags);
}
goRegExp.code = 'goRegExp';

const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false, code: { regExp: goRegExp as any } });
const crdValidators = new Map<string, ValidateFunction>();

function crdValidator(key: string): ValidateFunction | undefined {
  const schema = (crdSchemas as Record<string, object>)[key];
  if (!schema) return undefined;
  let validate = crdValidators.get(key);
  if (!validate) {
    validate = ajv.compile(schema);
    crdValidators.set(key, validate);
  }
  return validate;
}

/** kubernetes-models module path for an apiVersion: `apps/v1` → `kubernetes-models/apps/v1`, `v1` → `kubernetes-models/v1`. */
function coreModelFor(apiVersion: string, kind: string): any {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require(`kubernetes-models/${apiVersion}`)[kind];
  } catch {
    return undefined;
  }
}

/** Throws unless the object is valid for its kind; an unknown kind is an error too. */
export function validateManifest(manifest: Manifest): void {
  const where = `${manifest.kind} ${manifest.metadata?.namespace ?? ''}/${manifest.metadata?.name ?? '?'}`;
  const [group, version] = manifest.apiVersion.includes('/') ? manifest.apiVersion.split('/') : ['', manifest.apiVersion];

  const validate = crdValidator(`${group}/${version}/${manifest.kind}`);
  if (validate) {
    if (!validate(manifest)) {
      throw new Error(`${where} does not match its CRD schema: ${ajv.errorsText(validate.errors, { separator: '; ' })}`);
    }
    return;
  }

  const Model = coreModelFor(manifest.apiVersion, manifest.kind);
  if (!Model) throw new Error(`${where}: no schema known for apiVersion ${manifest.apiVersion}`);
  try {
    new Model(manifest).validate();
  } catch (error) {
    throw new Error(`${where} does not match the Kubernetes 1.27 schema: ${(error as Error).message}`);
  }
}

/** Synthesizes a chart, validates every object, and returns them. */
export function synthValid(chart: Chart): Manifest[] {
  const manifests = Testing.synth(chart) as Manifest[];
  manifests.forEach(validateManifest);
  return manifests;
}

/** The only object of a kind (and name, if given); throws when there is none or more than one. */
export function only(manifests: Manifest[], kind: string, name?: string): Manifest {
  const found = manifests.filter((m) => m.kind === kind && (name === undefined || m.metadata.name === name));
  if (found.length !== 1) {
    throw new Error(`expected one ${kind}${name ? ` named ${name}` : ''}, found ${found.length}`);
  }
  return found[0];
}

/** All objects of a kind. */
export function all(manifests: Manifest[], kind: string): Manifest[] {
  return manifests.filter((m) => m.kind === kind);
}

/** A fresh chart in a namespace, for unit tests. */
export function testChart(namespace = 'ai-workers'): Chart {
  return new Chart(Testing.app(), 'test', { namespace });
}

/** Runs `build` once and returns the InvalidPropError it throws; fails the test when it throws nothing else. */
export function invalidPropError(build: () => unknown): InvalidPropError {
  try {
    build();
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidPropError);
    return error as InvalidPropError;
  }
  throw new Error('expected an InvalidPropError, but nothing was thrown');
}

/** Expects `build` to throw an InvalidPropError whose message names `prop` (in backticks) and matches `fix`. */
export function expectInvalidProp(build: () => unknown, prop: string, fix: RegExp): void {
  const error = invalidPropError(build);
  expect(error.message).toContain(`\`${prop}\``);
  expect(error.message).toMatch(fix);
}
