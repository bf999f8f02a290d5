import t from 'tap';
import { logsFieldsOf, readConfig } from './config.ts';
import { grafanaLink, kibanaDiscoverLink, risonString } from './links.ts';

const target = { namespace: 'ns', pod: "it's-0", container: 'c', fromMs: 0, toMs: 60_000 };

t.test('no base URL, no link', async (t) => {
  t.equal(grafanaLink('', 'uid', target), undefined);
  t.equal(kibanaDiscoverLink('', '', logsFieldsOf(readConfig({})), target), undefined);
});

t.test('Grafana: dashboard, variables and time range', async (t) => {
  const url = new URL(grafanaLink('https://g.example/grafana/', 'pod-dash', target) ?? '');
  t.equal(url.pathname, '/grafana/d/pod-dash/');
  t.equal(url.searchParams.get('var-pod'), "it's-0");
  t.equal(url.searchParams.get('to'), '60000');
});

t.test('Kibana: Rison state with escaped quotes, the data view when given', async (t) => {
  t.equal(risonString("it's!"), "'it!'s!!'");
  const url =
    kibanaDiscoverLink('https://k.example', 'logs-view', logsFieldsOf(readConfig({})), target) ?? '';
  const decoded = decodeURIComponent(url);
  t.match(decoded, "dataViewId:'logs-view'");
  t.match(decoded, `kubernetes.pod.name:"it!'s-0"`);
  t.match(decoded, "from:'1970-01-01T00:00:00.000Z',to:'1970-01-01T00:01:00.000Z'");
});
