// The live suite's prometheus-adapter renderer, checked against the behaviour of the adapter's own query builder
// (pkg/naming/metrics_query.go and its tests): matcher operators, ordering, template fields and namespaces.
import {
  AdapterRule,
  buildExternalQuery,
  buildObjectQuery,
  expandName,
  goQuote,
  renderTemplate,
  selectorRequirements,
} from './prometheus-adapter';

const podRule = (metricsQuery: string): AdapterRule => ({
  seriesQuery: 'x{namespace!="",pod!=""}',
  resources: { overrides: { namespace: { resource: 'namespace' }, pod: { resource: 'pod' } } },
  metricsQuery,
});

const externalRule = (metricsQuery: string, namespaced?: boolean): AdapterRule => ({
  seriesQuery: 'x',
  resources: { overrides: { namespace: { resource: 'namespace' } }, ...(namespaced === undefined ? {} : { namespaced }) },
  metricsQuery,
});

describe('object (custom) metric queries', () => {
  test('one object name is matched with =, several with =~ and |', () => {
    expect(buildObjectQuery(podRule('<<.LabelMatchers>>'), 's', 'pods', '', ['bar'])).toBe('pod="bar"');
    expect(buildObjectQuery(podRule('<<.LabelMatchers>>'), 's', 'pods', '', ['bar', 'baz'])).toBe('pod=~"bar|baz"');
  });

  test('selector matchers come first, then the namespace, then the resource', () => {
    const query = buildObjectQuery(podRule('<<.LabelMatchers>>'), 's', 'pods', 'ai-workers', ['a', 'b'], { matchLabels: { gpu: '0' } });
    expect(query).toBe('gpu="0",namespace="ai-workers",pod=~"a|b"');
  });

  test('GroupBy is the resource label; GroupBySlice prints like a Go slice', () => {
    expect(buildObjectQuery(podRule('<<.GroupBy>> <<.GroupBySlice>>'), 's', 'pods', 'ns', ['a'])).toBe('pod [pod]');
  });

  test('LabelValuesByName by index, and the series name', () => {
    const query = buildObjectQuery(podRule('<<.Series>> <<index .LabelValuesByName "namespace">> <<index .LabelValuesByName "pod">>'), 'DCGM_FI_DEV_GPU_UTIL', 'pods', 'default', ['a', 'b']);
    expect(query).toBe('DCGM_FI_DEV_GPU_UTIL default a|b');
  });

  test('a resource without a label mapping is an error, as in the adapter', () => {
    const rule: AdapterRule = { seriesQuery: 'x', metricsQuery: '<<.LabelMatchers>>' };
    expect(() => buildObjectQuery(rule, 's', 'pods', 'ns', ['a'])).toThrow(/maps no label to the namespaces resource/);
  });

  test('a label template names resources by their singular', () => {
    const rule: AdapterRule = { seriesQuery: 'x', resources: { template: 'kube_<<.Resource>>' }, metricsQuery: '<<.LabelMatchers>>' };
    expect(buildObjectQuery(rule, 's', 'pods', 'ns', ['a'])).toBe('kube_namespace="ns",kube_pod="a"');
  });
});

describe('external metric queries', () => {
  test('namespaced rules (the default) add the HPA namespace after the selector', () => {
    expect(buildExternalQuery(externalRule('<<.LabelMatchers>>'), 's', 'default', { matchLabels: { foo: 'bar' } }))
      .toBe('foo="bar",namespace="default"');
  });

  test('namespaced: false leaves the namespace out', () => {
    expect(buildExternalQuery(externalRule('<<.LabelMatchers>>', false), 's', 'default', { matchLabels: { foo: 'bar' } })).toBe('foo="bar"');
    expect(buildExternalQuery(externalRule('<<index .LabelValuesByName "namespace">> <<.GroupBySlice>>', false), 's', 'default', undefined)).toBe(' []');
  });

  test('GroupBy is empty for external metrics', () => {
    expect(buildExternalQuery(externalRule('sum by (<<.GroupBy>>) (<<.Series>>)', false), 'queue_depth', 'ns', undefined)).toBe('sum by () (queue_depth)');
  });

  test('requirements are sorted by key; In becomes =~ with values sorted and joined', () => {
    const selector = { matchLabels: { zone: 'a' }, matchExpressions: [{ key: 'queue', operator: 'In', values: ['jobs-b', 'jobs-a'] }] };
    expect(buildExternalQuery(externalRule('<<.LabelMatchers>>', false), 's', 'ns', selector)).toBe('queue=~"jobs-a|jobs-b",zone="a"');
  });

  test('In with one value is still a regex match, exactly as the adapter renders it', () => {
    const selector = { matchExpressions: [{ key: 'queue', operator: 'In', values: ['jobs'] }] };
    expect(buildExternalQuery(externalRule('<<.LabelMatchers>>', false), 's', 'ns', selector)).toBe('queue=~"jobs"');
  });

  test('negative and existence operators', () => {
    const selector = {
      matchExpressions: [
        { key: 'a', operator: 'NotIn', values: ['x', 'y'] },
        { key: 'b', operator: 'Exists' },
        { key: 'c', operator: 'DoesNotExist' },
      ],
    };
    expect(buildExternalQuery(externalRule('<<.LabelMatchers>>', false), 's', 'ns', selector)).toBe('a!~"x|y",b!="",c=""');
  });

  test('LabelValuesByName prints like a Go map', () => {
    const selector = { matchExpressions: [{ key: 'foo', operator: 'In', values: ['bar', 'baz'] }] };
    expect(buildExternalQuery(externalRule('<<.LabelValuesByName>>', false), 's', 'ns', selector)).toBe('map[foo:bar|baz]');
  });
});

describe('what the API server would refuse never reaches the query', () => {
  test('the default vhost "/" is not a label value', () => {
    expect(() => selectorRequirements({ matchLabels: { vhost: '/' } })).toThrow(/not a valid label value/);
  });

  test('a 64-character value is too long', () => {
    expect(() => selectorRequirements({ matchLabels: { queue: 'q'.repeat(64) } })).toThrow(/not a valid label value/);
  });

  test('an invalid key', () => {
    expect(() => selectorRequirements({ matchLabels: { 'bad key': 'x' } })).toThrow(/key "bad key" is invalid/);
  });
});

describe('template details', () => {
  const args = { Series: 's', LabelMatchers: 'a="b"', LabelValuesByName: {}, GroupBy: '', GroupBySlice: [] };

  test('trim markers remove the surrounding space', () => {
    expect(renderTemplate('x   <<- .Series ->>   y', args)).toBe('xsy');
  });

  test('actions it does not implement are refused, never rendered wrong', () => {
    expect(() => renderTemplate('<<range .GroupBySlice>>x<<end>>', args)).toThrow(/not implemented/);
    expect(() => renderTemplate('<<.Series', args)).toThrow(/unclosed action/);
  });

  test('Go quoting of label values', () => {
    expect(goQuote('a"b\\c\n')).toBe('"a\\"b\\\\c\\n"');
  });

  test('name.as expands like Go\'s Regexp.Expand: ${1}, $0, named groups, and the $1_x pitfall', () => {
    const match = /^(?<base>.*)_total$/.exec('http_requests_total')!;
    expect(expandName('${1}_per_second', match)).toBe('http_requests_per_second');
    // Go reads "$1_per_second" as the group named "1_per_second", which does not exist: an empty name.
    expect(expandName('$1_per_second', match)).toBe('');
    expect(expandName('${base}', match)).toBe('http_requests');
    expect(expandName('$0', match)).toBe('http_requests_total');
  });
});
