import { ApiObject } from 'cdk8s';
import { synthValid, testChart } from './manifests';

describe('schema validation of synthesized objects', () => {
  test('a valid core object passes', () => {
    const chart = testChart();
    new ApiObject(chart, 'cm', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'ok' }, data: { a: 'b' } });
    expect(synthValid(chart)).toHaveLength(1);
  });

  test('an invalid core object fails with its kind, name and the field', () => {
    const chart = testChart();
    new ApiObject(chart, 'svc', { apiVersion: 'v1', kind: 'Service', metadata: { name: 'bad' }, spec: { ports: [{ port: 'eighty' }] } });
    expect(() => synthValid(chart)).toThrow(/Service ai-workers\/bad .*port/);
  });

  test('an invalid custom resource fails against its CRD schema', () => {
    const chart = testChart();
    new ApiObject(chart, 'sm', {
      apiVersion: 'monitoring.coreos.com/v1',
      kind: 'ServiceMonitor',
      metadata: { name: 'bad' },
      spec: { endpoints: [{ port: 'metrics', interval: 30 }] },
    });
    expect(() => synthValid(chart)).toThrow(/ServiceMonitor ai-workers\/bad does not match its CRD schema/);
  });

  test('an unknown kind is an error, never silently accepted', () => {
    const chart = testChart();
    new ApiObject(chart, 'x', { apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w' } });
    expect(() => synthValid(chart)).toThrow(/no schema known/);
  });
});
