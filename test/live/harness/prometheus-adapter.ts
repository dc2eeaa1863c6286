/**
 * What prometheus-adapter sends to Prometheus for an HPA metric, rendered the way the adapter renders it, and
 * sent to a real Prometheus.
 *
 * Facts carried over from prometheus-adapter (pkg/naming/metrics_query.go, metric_namer.go,
 * resource_converter.go, pkg/client/helpers.go; docs/externalmetrics.md):
 * - `metricsQuery` is a Go text/template with `<<` `>>` delimiters over Series, LabelMatchers,
 *   LabelValuesByName, GroupBy and GroupBySlice.
 * - LabelMatchers are built from the metric selector's requirements in the order the parsed selector keeps them
 *   (sorted by key): `=` for Equals with one value, `=~` for In (even with one value) and for several values
 *   joined with `|`, `!=` / `!~` for the negative operators, `!=""` for Exists and `=""` for DoesNotExist; each value
 *   quoted like Go's `%q`.
 * - External metrics: a `namespace` matcher with the HPA's namespace is appended unless the rule says
 *   `resources: { namespaced: false }`; GroupBy is empty and GroupBySlice is `[]`.
 * - Custom (object) metrics: the namespace matcher (label of the `namespaces` resource), then the matcher of the
 *   resource label with the object names (`=` for one, `=~"a|b"` for several); GroupBy is the resource label.
 * - Discovery: the adapter lists `/api/v1/series?match[]=<seriesQuery>`, keeps series whose name passes
 *   `seriesFilters` and `name.matches`, and names the metric with `name.as` (default `$0`, or `$1` with one group).
 * - Each returned sample becomes a milli-quantity, `int64(value * 1000)`.
 *
 * Not implemented, named: template actions other than fields and `index` (range/if/with are refused with an
 * error, never rendered wrongly), `metricsQuery` on the `resourceRules` path, and `labelValueReplacements`.
 */
import * as YAML from 'yaml';
import { PrometheusServer, VectorSample } from './prometheus';

/** A requirement of a parsed Kubernetes label selector. */
export interface Requirement {
  readonly key: string;
  readonly operator: 'Equals' | 'NotEquals' | 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';
  readonly values: readonly string[];
}

/** `metav1.LabelSelector` as it appears in an HPA metric. */
export interface LabelSelector {
  readonly matchLabels?: Record<string, string>;
  readonly matchExpressions?: ReadonlyArray<{ key: string; operator: string; values?: string[] }>;
}

// Kubernetes validation of selector keys and values (the API server rejects an HPA that breaks them).
const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

function checkKey(key: string): void {
  const [prefix, name] = key.includes('/') ? key.split('/', 2) : [undefined, key];
  const nameOk = name.length <= 63 && QUALIFIED_NAME.test(name);
  const prefixOk = prefix === undefined || (prefix.length <= 253 && DNS_SUBDOMAIN.test(prefix));
  if (!nameOk || !prefixOk) throw new Error(`label selector key ${JSON.stringify(key)} is invalid: the API server would reject the HPA`);
}

function checkValue(key: string, value: string): void {
  if (value.length > 63 || !LABEL_VALUE.test(value)) {
    throw new Error(`label selector value ${JSON.stringify(value)} of ${key} is not a valid label value: the API server would reject the HPA`);
  }
}

/**
 * `metav1.LabelSelectorAsSelector` followed by the string round trip to the metrics API server: requirements
 * sorted by key, values sorted, invalid keys or values rejected.
 */
export function selectorRequirements(selector: LabelSelector | undefined): Requirement[] {
  const reqs: Requirement[] = [];
  for (const [key, value] of Object.entries(selector?.matchLabels ?? {})) {
    checkKey(key);
    checkValue(key, value);
    reqs.push({ key, operator: 'Equals', values: [value] });
  }
  for (const exp of selector?.matchExpressions ?? []) {
    checkKey(exp.key);
    const values = [...(exp.values ?? [])].sort();
    values.forEach((v) => checkValue(exp.key, v));
    switch (exp.operator) {
      case 'In':
      case 'NotIn':
        if (values.length === 0) throw new Error(`matchExpressions ${exp.key} ${exp.operator} needs values`);
        reqs.push({ key: exp.key, operator: exp.operator, values });
        break;
      case 'Exists':
      case 'DoesNotExist':
        if (values.length > 0) throw new Error(`matchExpressions ${exp.key} ${exp.operator} takes no values`);
        reqs.push({ key: exp.key, operator: exp.operator, values: [] });
        break;
      default:
        throw new Error(`matchExpressions operator ${exp.operator} is not a label selector operator`);
    }
  }
  return reqs.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/** Go's `%q` for the strings that occur here: double quotes, Go escapes for quotes, backslashes and controls. */
export function goQuote(value: string): string {
  let out = '"';
  for (const ch of value) {
    const code = ch.codePointAt(0)!;
    if (ch === '"' || ch === '\\') out += `\\${ch}`;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\t') out += '\\t';
    else if (ch === '\r') out += '\\r';
    else if (code < 0x20 || code === 0x7f) out += `\\x${code.toString(16).padStart(2, '0')}`;
    else out += ch;
  }
  return `${out}"`;
}

/** One requirement as a PromQL matcher, exactly as the adapter's selectMatcher/selectTargetValue do it. */
function matcherFor(req: Requirement): string {
  const n = req.values.length;
  const joined = req.values.join('|');
  switch (req.operator) {
    case 'Equals': return n === 1 ? `${req.key}=${goQuote(joined)}` : `${req.key}=~${goQuote(joined)}`;
    case 'In': return `${req.key}=~${goQuote(joined)}`;
    case 'NotEquals': return n === 1 ? `${req.key}!=${goQuote(joined)}` : `${req.key}!~${goQuote(joined)}`;
    case 'NotIn': return `${req.key}!~${goQuote(joined)}`;
    case 'Exists': return `${req.key}!=""`;
    case 'DoesNotExist': return `${req.key}=""`;
  }
}

/** The arguments the adapter passes to its query template. */
export interface QueryTemplateArgs {
  readonly Series: string;
  readonly LabelMatchers: string;
  readonly LabelValuesByName: Record<string, string>;
  readonly GroupBy: string;
  readonly GroupBySlice: readonly string[];
}

/** How Go's text/template prints a value: slices as `[a b]`, maps as `map[k:v]` with sorted keys. */
function goPrint(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(goPrint).join(' ')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.keys(value).sort().map((k) => `${k}:${goPrint((value as Record<string, unknown>)[k])}`);
    return `map[${entries.join(' ')}]`;
  }
  return String(value);
}

/** Renders a `<<` `>>` Go template over the adapter's arguments (fields and `index` only). */
export function renderTemplate(template: string, args: QueryTemplateArgs): string {
  let out = '';
  let rest = template;
  while (rest.length > 0) {
    const open = rest.indexOf('<<');
    if (open < 0) {
      out += rest;
      break;
    }
    const close = rest.indexOf('>>', open + 2);
    if (close < 0) throw new Error(`unclosed action in metrics query template ${JSON.stringify(template)}`);
    let text = rest.slice(0, open);
    let action = rest.slice(open + 2, close);
    rest = rest.slice(close + 2);
    // Go's trim markers: "<<- " trims space before, " ->>" trims space after.
    if (action.startsWith('- ')) {
      text = text.replace(/\s+$/, '');
      action = action.slice(2);
    }
    if (action.endsWith(' -')) {
      rest = rest.replace(/^\s+/, '');
      action = action.slice(0, -2);
    }
    out += text + evaluateAction(action.trim(), args, template);
  }
  return out;
}

function evaluateAction(action: string, args: QueryTemplateArgs, template: string): string {
  const field = /^\.([A-Za-z]+)$/.exec(action);
  if (field) {
    if (!(field[1] in args)) throw new Error(`template ${JSON.stringify(template)}: can't evaluate field ${field[1]}`);
    return goPrint((args as unknown as Record<string, unknown>)[field[1]]);
  }
  const index = /^index\s+\.LabelValuesByName\s+"([^"]*)"$/.exec(action);
  if (index) return args.LabelValuesByName[index[1]] ?? '';
  throw new Error(`template action <<${action}>> is not implemented by the live harness's renderer (fields and index only)`);
}

/** Go's Regexp.ExpandString for `name.as`: `$1`, `${1}`, `$name`, `${name}`, `$$`. */
export function expandName(as: string, match: RegExpExecArray): string {
  return as.replace(/\$(\$|\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))/g, (_all, dollar, braced, bare) => {
    if (dollar === '$') return '$';
    const name = braced ?? bare;
    if (/^\d+$/.test(name)) return match[Number(name)] ?? '';
    return match.groups?.[name] ?? '';
  });
}

/** A rule of the adapter's configuration (`rules` or `externalRules` entry). */
export interface AdapterRule {
  readonly seriesQuery: string;
  readonly seriesFilters?: ReadonlyArray<{ is?: string; isNot?: string }>;
  readonly resources?: {
    readonly template?: string;
    readonly overrides?: Record<string, { group?: string; resource: string }>;
    readonly namespaced?: boolean;
  };
  readonly name?: { readonly matches?: string; readonly as?: string };
  readonly metricsQuery: string;
}

/** The parsed `config.yaml` of the adapter. */
export interface AdapterConfig {
  readonly rules?: readonly AdapterRule[];
  readonly externalRules?: readonly AdapterRule[];
}

/** Reads the adapter configuration out of its ConfigMap (any key ending in .yaml, normally config.yaml). */
export function adapterConfigFromConfigMap(configMap: { readonly [key: string]: any }): AdapterConfig {
  const data: Record<string, string> = configMap.data ?? {};
  const key = Object.keys(data).find((k) => k.endsWith('.yaml') || k.endsWith('.yml'));
  if (!key) throw new Error(`the adapter ConfigMap has no YAML key (keys: ${Object.keys(data).join(', ')})`);
  return YAML.parse(data[key]) as AdapterConfig;
}

// The few group-resources the suite needs, singular ↔ plural, as the RESTMapper would normalize them.
const PLURALS: Record<string, string> = { namespace: 'namespaces', pod: 'pods', service: 'services', node: 'nodes', deployment: 'deployments' };
const groupResource = (resource: string, group = '') => `${group}/${PLURALS[resource] ?? resource}`;

/** The label that stands for a group-resource in a rule (overrides first, then the template). */
function labelForResource(rule: AdapterRule, resource: string, group = ''): string {
  const wanted = groupResource(resource, group);
  for (const [label, gr] of Object.entries(rule.resources?.overrides ?? {})) {
    if (groupResource(gr.resource, gr.group) === wanted) return label;
  }
  const template = rule.resources?.template;
  if (template) {
    const singular = Object.entries(PLURALS).find(([, plural]) => plural === resource)?.[0] ?? resource;
    return template.replace(/<<\s*\.Resource\s*>>/g, singular).replace(/<<\s*\.Group\s*>>/g, group.replace(/[.-]/g, '_'));
  }
  throw new Error(`rule ${JSON.stringify(rule.seriesQuery)} maps no label to the ${resource} resource`);
}

/** A discovered metric: the API name, the Prometheus series behind it, and its rule. */
export interface DiscoveredMetric {
  readonly metricName: string;
  readonly seriesName: string;
  readonly rule: AdapterRule;
}

/** What one metrics API request turned into, and what came back. */
export interface AdapterAnswer {
  readonly query: string;
  readonly samples: VectorSample[];
  /** Values as the adapter returns them, in milli-units (`int64(v * 1000)`). */
  readonly milliValues: number[];
}

function seriesNameMatches(rule: AdapterRule, name: string): boolean {
  for (const filter of rule.seriesFilters ?? []) {
    if (filter.is !== undefined && !new RegExp(filter.is).test(name)) return false;
    if (filter.isNot !== undefined && new RegExp(filter.isNot).test(name)) return false;
  }
  if (rule.name?.matches && !new RegExp(rule.name.matches).test(name)) return false;
  return true;
}

function metricNameFor(rule: AdapterRule, seriesName: string): string {
  const regex = new RegExp(rule.name?.matches || '.*');
  const match = regex.exec(seriesName);
  if (!match) throw new Error(`series ${seriesName} does not match ${regex}`);
  let as = rule.name?.as;
  if (!as) {
    const groups = match.length - 1;
    if (groups === 0) as = '$0';
    else if (groups === 1) as = '$1';
    else throw new Error(`rule ${JSON.stringify(rule.seriesQuery)}: name.matches has ${groups} groups, so name.as is required`);
  }
  return expandName(as, match);
}

/** prometheus-adapter in front of one Prometheus, for one configuration. */
export class PrometheusAdapterModel {
  constructor(private readonly config: AdapterConfig, private readonly prometheus: PrometheusServer) {}

  /** The external metrics the adapter would list now (name → series and rule). */
  public async discoverExternal(): Promise<Map<string, DiscoveredMetric>> {
    return this.discover(this.config.externalRules ?? [], false);
  }

  /** The custom metrics the adapter would list now, for series that carry a namespace and a pod label. */
  public async discoverCustom(): Promise<Map<string, DiscoveredMetric>> {
    return this.discover(this.config.rules ?? [], true);
  }

  /**
   * GET /apis/external.metrics.k8s.io/v1beta1/namespaces/<hpaNamespace>/<metricName>?labelSelector=<selector>:
   * the query the adapter builds, and Prometheus' answer to it.
   */
  public async externalMetric(hpaNamespace: string, metricName: string, selector: LabelSelector | undefined): Promise<AdapterAnswer> {
    const found = (await this.discoverExternal()).get(metricName);
    if (!found) {
      throw new Error(`external metric ${metricName} is not served: no series matched any externalRule's seriesQuery ` +
        `(${(this.config.externalRules ?? []).map((r) => r.seriesQuery).join(' ; ')})`);
    }
    const query = buildExternalQuery(found.rule, found.seriesName, hpaNamespace, selector);
    return this.run(query);
  }

  /**
   * GET /apis/custom.metrics.k8s.io/v1beta1/namespaces/<namespace>/pods/*\/<metricName>, for the pods the HPA's
   * target selects: the query, and the value per pod name (pods without a value are absent).
   */
  public async podsMetric(
    namespace: string,
    metricName: string,
    podNames: readonly string[],
  ): Promise<AdapterAnswer & { byPod: Record<string, number> }> {
    const found = (await this.discoverCustom()).get(metricName);
    if (!found) {
      throw new Error(`custom metric ${metricName} is not served for pods: no series with namespace and pod labels matched any rule's seriesQuery ` +
        `(${(this.config.rules ?? []).map((r) => r.seriesQuery).join(' ; ')})`);
    }
    const query = buildObjectQuery(found.rule, found.seriesName, 'pods', namespace, podNames);
    const answer = await this.run(query);
    const podLabel = labelForResource(found.rule, 'pods');
    const byPod: Record<string, number> = {};
    answer.samples.forEach((s, i) => {
      const pod = s.metric[podLabel];
      if (pod !== undefined && podNames.includes(pod)) byPod[pod] = answer.milliValues[i] / 1000;
    });
    return { ...answer, byPod };
  }

  private async run(query: string): Promise<AdapterAnswer> {
    const samples = await this.prometheus.query(query);
    return { query, samples, milliValues: samples.map((s) => Math.trunc(s.value * 1000)) };
  }

  private async discover(rules: readonly AdapterRule[], needsPods: boolean): Promise<Map<string, DiscoveredMetric>> {
    const found = new Map<string, DiscoveredMetric>();
    for (const rule of rules) {
      for (const series of await this.prometheus.series(rule.seriesQuery)) {
        const name = series.__name__;
        if (!seriesNameMatches(rule, name)) continue;
        if (needsPods) {
          const labels = Object.keys(series);
          const hasPod = labels.includes(tryLabel(rule, 'pods'));
          const hasNamespace = labels.includes(tryLabel(rule, 'namespaces'));
          if (!hasPod || !hasNamespace) continue;
        }
        found.set(metricNameFor(rule, name), { metricName: metricNameFor(rule, name), seriesName: name, rule });
      }
    }
    return found;
  }
}

function tryLabel(rule: AdapterRule, resource: string): string {
  try {
    return labelForResource(rule, resource);
  } catch {
    return '\u0000none';
  }
}

/** BuildExternal: the selector's matchers, plus the HPA namespace unless the rule is `namespaced: false`. */
export function buildExternalQuery(rule: AdapterRule, seriesName: string, hpaNamespace: string, selector: LabelSelector | undefined): string {
  const reqs = selectorRequirements(selector);
  const namespaced = rule.resources?.namespaced ?? true;
  if (namespaced && hpaNamespace !== '') {
    reqs.push({ key: labelForResource(rule, 'namespaces'), operator: 'Equals', values: [hpaNamespace] });
  }
  const args: QueryTemplateArgs = {
    Series: seriesName,
    LabelMatchers: reqs.map(matcherFor).join(','),
    LabelValuesByName: Object.fromEntries(reqs.map((r) => [r.key, r.values.join('|')])),
    GroupBy: '',
    GroupBySlice: [],
  };
  return nonEmpty(renderTemplate(rule.metricsQuery, args));
}

/** Build: namespace matcher, then the resource label with the object names; GroupBy is the resource label. */
export function buildObjectQuery(rule: AdapterRule, seriesName: string, resource: string, namespace: string, names: readonly string[],
  selector?: LabelSelector): string {
  const reqs = selectorRequirements(selector);
  if (namespace !== '') reqs.push({ key: labelForResource(rule, 'namespaces'), operator: 'Equals', values: [namespace] });
  const exprs = reqs.map(matcherFor);
  const valuesByName: Record<string, string> = Object.fromEntries(reqs.map((r) => [r.key, r.values.join('|')]));
  const resourceLabel = labelForResource(rule, resource);
  const target = names.join('|');
  exprs.push(names.length > 1 ? `${resourceLabel}=~${goQuote(target)}` : `${resourceLabel}=${goQuote(target)}`);
  valuesByName[resourceLabel] = target;
  const args: QueryTemplateArgs = {
    Series: seriesName,
    LabelMatchers: exprs.join(','),
    LabelValuesByName: valuesByName,
    GroupBy: resourceLabel,
    GroupBySlice: [resourceLabel],
  };
  return nonEmpty(renderTemplate(rule.metricsQuery, args));
}

function nonEmpty(query: string): string {
  if (query.length === 0) throw new Error('empty query produced by metrics query template');
  return query;
}
