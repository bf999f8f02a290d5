import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { kubeConfigFrom } from './kube-config.ts';

function kubeconfig(dir: string, server: string): string {
  const path = join(dir, `${server.replace(/\W/g, '_')}.yaml`);
  writeFileSync(
    path,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'c', cluster: { server } }],
      users: [{ name: 'u', user: { token: 'x' } }],
      contexts: [{ name: 'ctx', context: { cluster: 'c', user: 'u' } }],
      'current-context': 'ctx',
    }),
  );
  return path;
}

t.test('a path names the kubeconfig; an empty one takes the default ($KUBECONFIG)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pm-kube-'));
  const saved = process.env.KUBECONFIG;
  t.teardown(() => {
    if (saved === undefined) delete process.env.KUBECONFIG;
    else process.env.KUBECONFIG = saved;
    rmSync(dir, { recursive: true, force: true });
  });
  t.equal(
    kubeConfigFrom(kubeconfig(dir, 'https://named:6443')).getCurrentCluster()?.server,
    'https://named:6443',
  );
  process.env.KUBECONFIG = kubeconfig(dir, 'https://default:6443');
  t.equal(kubeConfigFrom('').getCurrentCluster()?.server, 'https://default:6443');
  t.throws(() => kubeConfigFrom(join(dir, 'absent.yaml')), { code: 'ENOENT' });
});
