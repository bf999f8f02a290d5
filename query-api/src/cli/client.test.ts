import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { EXIT, exitCodeForStatus, resolveCredentials } from './client.ts';
import { parseDuration } from './cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'pm-cli-unit-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

t.test('exit codes by HTTP status', async (t) => {
  t.same(
    [401, 403, 404, 410, 400, 416, 500, 429, 502, 503, 504].map(exitCodeForStatus),
    [4, 4, 3, 3, 2, 2, 1, 6, 6, 6, 6],
  );
});

t.test('server and token: flags, then the environment, then the kubeconfig', async (t) => {
  const kubeconfig = join(dir, 'config');
  writeFileSync(
    kubeconfig,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'c', cluster: { server: 'https://k8s.example' } }],
      users: [{ name: 'u', user: { token: 'from-kubeconfig' } }],
      contexts: [{ name: 'x', context: { cluster: 'c', user: 'u' } }],
      'current-context': 'x',
    }),
  );
  const env = {
    PODMORTEM_SERVER: 'http://env.example/',
    PODMORTEM_TOKEN: 'from-env',
    KUBECONFIG: kubeconfig,
  };
  t.same(await resolveCredentials({ server: 'https://flag.example', token: 'from-flag' }, env), {
    server: 'https://flag.example',
    token: 'from-flag',
  });
  t.same(await resolveCredentials({}, env), { server: 'http://env.example', token: 'from-env' });
  t.same(await resolveCredentials({}, { ...env, PODMORTEM_TOKEN: undefined }), {
    server: 'http://env.example',
    token: 'from-kubeconfig',
  });
  t.same(await resolveCredentials({}, { PODMORTEM_SERVER: 'http://x', HOME: dir }), {
    server: 'http://x',
    token: undefined,
  });
  await t.rejects(resolveCredentials({}, {}), { exitCode: EXIT.usage, message: /--server/ });
  await t.rejects(resolveCredentials({ server: 'ftp://x' }, {}), {
    name: 'CliError',
    exitCode: EXIT.usage,
    message: '--server ftp://x: http or https only',
  });
  await t.rejects(resolveCredentials({ server: 'not a url' }, {}), {
    name: 'CliError',
    exitCode: EXIT.usage,
    message: '--server not a url is not a URL',
  });
});

t.test('durations for --since', async (t) => {
  t.equal(parseDuration('90s'), 90_000);
  t.equal(parseDuration('2h'), 7_200_000);
  t.throws(() => parseDuration('2 hours'), {
    name: 'CliError',
    exitCode: EXIT.usage,
    message: '--since 2 hours: expected a duration like 30m, 2h or 7d',
  });
});
