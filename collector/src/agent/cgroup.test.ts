import t from 'tap';
import { identityFromPath, identityFromProcCgroup } from './cgroup.ts';

const ID = 'c4a1f3e9b2d84f0e9a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f';
const UID = '5f0c8a52-8d7e-4c11-9f70-3f2b6c7d8e01';
const UID_ = UID.replaceAll('-', '_');

t.test('cgroup paths of every runtime and driver name the container and pod', async (t) => {
  const table: [string, string, ReturnType<typeof identityFromPath>][] = [
    [
      'containerd, systemd driver, burstable',
      `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice/cri-containerd-${ID}.scope`,
      { containerId: ID, runtime: 'containerd', podUid: UID, path: '' },
    ],
    [
      'containerd, systemd driver, besteffort',
      `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${UID_}.slice/cri-containerd-${ID}.scope`,
      { containerId: ID, runtime: 'containerd', podUid: UID, path: '' },
    ],
    [
      'containerd, systemd driver, guaranteed',
      `/kubepods.slice/kubepods-pod${UID_}.slice/cri-containerd-${ID}.scope`,
      { containerId: ID, runtime: 'containerd', podUid: UID, path: '' },
    ],
    [
      'containerd, its own systemd form (kind, nested nodes)',
      `/system.slice/containerd.service/kubepods-burstable-pod${UID_}.slice:cri-containerd:${ID}`,
      { containerId: ID, runtime: 'containerd', podUid: UID, path: '' },
    ],
    [
      'containerd, cgroupfs driver, burstable',
      `/kubepods/burstable/pod${UID}/${ID}`,
      { containerId: ID, runtime: 'unknown', podUid: UID, path: '' },
    ],
    [
      'cgroupfs driver, guaranteed',
      `/kubepods/pod${UID}/${ID}`,
      { containerId: ID, runtime: 'unknown', podUid: UID, path: '' },
    ],
    [
      'CRI-O, systemd driver',
      `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice/crio-${ID}.scope`,
      { containerId: ID, runtime: 'cri-o', podUid: UID, path: '' },
    ],
    [
      'CRI-O, cgroupfs driver',
      `/kubepods/besteffort/pod${UID}/crio-${ID}`,
      { containerId: ID, runtime: 'cri-o', podUid: UID, path: '' },
    ],
    [
      'Docker under the kubelet (systemd driver)',
      `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${UID_}.slice/docker-${ID}.scope`,
      { containerId: ID, runtime: 'docker', podUid: UID, path: '' },
    ],
    [
      'a cgroup the container made below its own',
      `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice/cri-containerd-${ID}.scope/init.scope`,
      { containerId: ID, runtime: 'containerd', podUid: UID, path: '' },
    ],
    ['plain Docker, cgroupfs', `/docker/${ID}`, { containerId: ID, runtime: 'docker', path: '' }],
    [
      'plain Docker, systemd',
      `/system.slice/docker-${ID}.scope`,
      { containerId: ID, runtime: 'docker', path: '' },
    ],
    ['a host service', '/system.slice/sshd.service', undefined],
    ['the root cgroup', '/', undefined],
    ['a user session', '/user.slice/user-0.slice/session-3.scope', undefined],
    ['the CRI-O monitor, not a container', `/system.slice/crio-conmon-${ID}.scope`, undefined],
    ['a bare hex name outside kubepods and docker', `/machine/${ID}`, undefined],
    ['a short id is not a container id', '/docker/c4a1f3e9b2d8', undefined],
    ['upper-case hex is not a runtime id', `/docker/${ID.toUpperCase()}`, undefined],
  ];
  for (const [name, path, want] of table) {
    t.same(identityFromPath(path), want && { ...want, path }, name);
  }
});

t.test('the unified line is read before the v1 controllers', async (t) => {
  const v1Path = `/kubepods/burstable/pod${UID}/${'a'.repeat(64)}`;
  const v2Path = `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice/cri-containerd-${ID}.scope`;
  const text = [`12:memory:${v1Path}`, `1:name=systemd:${v1Path}`, `0::${v2Path}`, ''].join('\n');
  t.same(identityFromProcCgroup(text), { containerId: ID, runtime: 'containerd', podUid: UID, path: v2Path });
});

t.test('a cgroup v1 host: any controller line names the container', async (t) => {
  const path = `/kubepods/burstable/pod${UID}/${ID}`;
  const text = ['11:cpuset:/', `4:memory:${path}`, `3:cpu,cpuacct:${path}`, ''].join('\n');
  t.same(identityFromProcCgroup(text), { containerId: ID, runtime: 'unknown', podUid: UID, path });
});

t.test('a process outside any container, and text that is not a cgroup file', async (t) => {
  t.equal(identityFromProcCgroup('0::/system.slice/cron.service\n4:memory:/process_api/2fc3\n'), undefined);
  t.equal(identityFromProcCgroup(''), undefined);
  t.equal(identityFromProcCgroup('garbage\n\u0000\u0001'), undefined);
  t.equal(identityFromProcCgroup(`no-colon-line /docker/${ID}`), undefined);
});
