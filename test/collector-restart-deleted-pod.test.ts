import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import {
  collectorSetup,
  compileC,
  CRASHERS,
  gcore,
  processInCgroup,
  runHandler,
} from './support/collector-agent.ts';
import { createPodCgroup } from './support/pod-cgroup.ts';
import { stack } from './support/stack.ts';
import { until } from './support/poll.ts';

// The agent process SIGKILLed; a crash reaches the spool while no agent runs, and its pod is
// deleted before the next agent starts. The Kubernetes API no longer knows the pod, so only what
// the killed agent kept in its state dir can name it: the crash must still be delivered with its
// pod, not with the cgroup's facts only.

const sleeperBin = compileC('sleeper', CRASHERS.sleeper);

t.test(
  'a pod deleted while the agent was down: its crash, spooled meanwhile, is delivered with the pod',
  async (t) => {
    const setup = await collectorSetup(stack.kafkaBrokers);
    t.teardown(() => setup.close());
    const pod = {
      namespace: 'batch',
      name: `report-${randomBytes(3).toString('hex')}`,
      uid: randomUUID(),
      containerId: randomBytes(32).toString('hex'),
    };
    setup.kube.addPod({
      namespace: pod.namespace,
      name: pod.name,
      uid: pod.uid,
      nodeName: setup.nodeName,
      labels: { app: 'report' },
      owner: { kind: 'Job', name: 'report' },
      containers: [
        {
          name: 'report',
          image: 'registry.example/batch/report:7',
          containerID: `containerd://${pod.containerId}`,
        },
      ],
    });
    const cgroup = createPodCgroup(pod.uid, pod.containerId);
    const proc = await processInCgroup(cgroup.path, sleeperBin);
    t.teardown(async () => {
      await proc.kill();
      cgroup.remove();
    });
    const core = gcore(proc.pid, setup.dir);

    const first = await setup.start();
    const stateFile = join(setup.stateDir, 'pods.json');
    await until("the pod in the agent's state file", () => {
      try {
        return readFileSync(stateFile, 'utf8').includes(pod.uid);
      } catch {
        return false;
      }
    });
    await first.kill();

    const run = await runHandler(
      setup.installDir,
      { pid: proc.pid, signal: 11, comm: 'sleeper', exe: sleeperBin },
      core,
    );
    t.equal(run.code, 0, `the handler spooled the crash: ${run.stderr}`);
    setup.kube.deletePod(pod.namespace, pod.name);

    const second = await setup.start();
    const event = await until('the crash on Kafka', () =>
      setup.topicEvents().find((e) => e.process.pid === proc.pid),
    );
    t.match(event.kubernetes, {
      namespace: pod.namespace,
      pod: { name: pod.name, uid: pod.uid },
      container: { name: 'report' },
      labels: { app: 'report' },
      owner: { kind: 'Job', name: 'report' },
    });
    t.equal(event.container?.image?.name, 'registry.example/batch/report:7');
    await setup.untilSpoolEmpty();
    t.equal(await second.metric('podmortem_collector_pods_unresolved_total'), 0, 'no crash unresolved');
    t.equal(await second.metric('podmortem_collector_pod_cache_file_errors_total'), 0);
    await second.stop();
  },
);
