/**
 * Prop checks shared by the constructs. Each failure throws at construction time with the construct,
 * the prop, what is wrong and what to do instead, so that no invalid manifest is ever synthesized.
 */

/** A prop that cannot be synthesized into a valid or correctly read manifest. */
export class InvalidPropError extends Error {
  constructor(
    /** The construct class, e.g. `QueueScaledHpa`. */
    public readonly construct: string,
    /** The prop path, e.g. `maxReplicas` or `gpu.count`. */
    public readonly prop: string,
    problem: string,
    fix: string,
  ) {
    super(`${construct}: \`${prop}\` ${problem}. ${fix}`);
    this.name = 'InvalidPropError';
  }
}

/** Throws an {@link InvalidPropError}. */
export function invalidProp(construct: string, prop: string, problem: string, fix: string): never {
  throw new InvalidPropError(construct, prop, problem, fix);
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Checks an RFC 1123 label: lower-case alphanumerics and '-', at most 63 characters (Service, Namespace names). */
export function checkDnsLabel(construct: string, prop: string, value: string): string {
  if (value.length === 0 || value.length > 63 || !DNS_LABEL.test(value)) {
    invalidProp(
      construct,
      prop,
      `is ${JSON.stringify(value)}, not a valid RFC 1123 label`,
      'Use 1 to 63 lower-case letters, digits or "-", starting and ending with a letter or digit.',
    );
  }
  return value;
}

/** Checks an RFC 1123 subdomain: labels joined by '.', at most 253 characters (most object names). */
export function checkDnsSubdomain(construct: string, prop: string, value: string): string {
  if (value.length === 0 || value.length > 253 || !DNS_SUBDOMAIN.test(value)) {
    invalidProp(
      construct,
      prop,
      `is ${JSON.stringify(value)}, not a valid RFC 1123 subdomain`,
      'Use at most 253 lower-case letters, digits, "-" or ".", starting and ending with a letter or digit.',
    );
  }
  return value;
}

/** Checks a whole number of at least `min` (default 1). */
export function checkInteger(construct: string, prop: string, value: number, min = 1): number {
  if (!Number.isInteger(value) || value < min) {
    invalidProp(construct, prop, `is ${value}`, `Use a whole number of at least ${min}.`);
  }
  return value;
}

/** Checks a finite number greater than zero. */
export function checkPositive(construct: string, prop: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0) {
    invalidProp(construct, prop, `is ${value}`, 'Use a number greater than 0.');
  }
  return value;
}

/** Checks `min <= max` for a pair of bounds. */
export function checkRange(construct: string, minProp: string, min: number, maxProp: string, max: number): void {
  if (min > max) {
    invalidProp(construct, minProp, `(${min}) is greater than \`${maxProp}\` (${max})`, `Set \`${minProp}\` <= \`${maxProp}\`.`);
  }
}

/** Checks a non-empty string without surrounding white space. */
export function checkNonEmpty(construct: string, prop: string, value: string): string {
  if (value.trim().length === 0 || value.trim() !== value) {
    invalidProp(construct, prop, `is ${JSON.stringify(value)}`, 'Give a non-empty value without leading or trailing spaces.');
  }
  return value;
}

/**
 * How a quantity is written for the object that reads it.
 * - `kubernetes`: a resource.Quantity in the form the API server stores it (`8`, `2500m`, `2k`), so that the applied
 *   manifest and the stored object do not differ (GitOps tools would show that as drift).
 * - `decimal`: a plain decimal, `2.5`, for KEDA trigger metadata, which KEDA parses as a float (Go's
 *   strconv.ParseFloat), so a suffix such as `m` would be refused.
 */
export type QuantitySyntax = 'kubernetes' | 'decimal';

/**
 * A scaling target or threshold as a string its reader takes exactly. Kubernetes quantities, and the targets
 * KEDA hands to its HPA (it truncates them to thousandths), stop at 0.001: anything finer would silently become
 * another number, and a positive value below 0.001 would become 0, which the API server rejects.
 *
 * @param options.allowZero accept 0 (activation thresholds); otherwise the least value is 0.001
 */
export function toQuantity(
  construct: string,
  prop: string,
  value: number,
  syntax: QuantitySyntax,
  options: { allowZero?: boolean } = {},
): string {
  const zero = options.allowZero && value === 0;
  if (!Number.isFinite(value) || (value < 0.001 && !zero)) {
    invalidProp(
      construct,
      prop,
      `is ${value}`,
      options.allowZero
        ? 'Use 0 or a number of at least 0.001.'
        : 'Use a number of at least 0.001: quantities count in thousandths, and anything smaller becomes 0, which the API server rejects.',
    );
  }
  const milli = Math.round(value * 1000);
  if (Math.abs(value * 1000 - milli) > 1e-6 * Math.max(1, milli)) {
    invalidProp(
      construct,
      prop,
      `is ${value}, finer than a thousandth`,
      `Use at most 3 decimal places (e.g. ${milli / 1000}): quantities count in thousandths, so the rest would be dropped.`,
    );
  }
  if (syntax === 'decimal') return String(milli / 1000);
  return canonicalDecimalQuantity(milli);
}

/**
 * The API server's canonical form of a decimal quantity given in thousandths: the largest SI suffix that keeps
 * the number whole (`500m`, `8`, `1500`, `2k`, `3M`).
 */
function canonicalDecimalQuantity(milli: number): string {
  if (milli % 1000 !== 0) return `${milli}m`;
  let whole = milli / 1000;
  const suffixes = ['', 'k', 'M', 'G', 'T', 'P', 'E'];
  let exponent = 0;
  while (whole !== 0 && whole % 1000 === 0 && exponent < suffixes.length - 1) {
    whole /= 1000;
    exponent++;
  }
  return `${whole}${suffixes[exponent]}`;
}
