import t from 'tap';
import { Type } from '@sinclair/typebox';
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConfigError, PodmortemError } from './errors.ts';
import type { Component } from './lifecycle.ts';
import { runService, type ServiceContext, type ServiceParts, type ServiceSpec } from './service.ts';

interface Config {
  shutdownGraceMs: number;
}

const schema = Type.Object({
  shutdownGraceMs: Type.Integer({ minimum: 0, default: 1000, description: 'Shutdown grace' }),
  listenPort: Type.Integer({ minimum: 0, default: 8080, description: 'HTTP port' }),
});

const { version } = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

function fakeProcess(extra: { argv?: string[]; env?: Record<string, string> } = {}) {
  const signals = new EventEmitter();
  const stdout: string[] = [];
  const stderr: string[] = [];
  const lines: Record<string, unknown>[] = [];
  const exits: number[] = [];
  const log = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean))
        lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return {
    proc: {
      ...extra,
      script: new URL('../../../indexer/src/main.ts', import.meta.url).pathname,
      stdout: { write: (s: string) => stdout.push(s) },
      stderr: { write: (s: string) => stderr.push(s) },
      signals,
      exit: (c: number) => exits.push(c),
      log,
    },
    signals,
    stdout,
    stderr,
    lines,
    exits,
    logged: (msg: string) => lines.filter((l) => l.msg === msg),
  };
}

/** A component that records what happens to it; `start` runs `onStart` (which may wait or throw). */
function part(
  name: string,
  events: string[],
  onStart: () => Promise<void> = () => Promise.resolve(),
): Component {
  return {
    name,
    async start() {
      events.push(`start ${name}`);
      await onStart();
    },
    async shutdown() {
      events.push(`shutdown ${name}`);
    },
  };
}

function spec(
  build: (ctx: ServiceContext<Config>) => ServiceParts,
  loadConfig: () => Config = () => ({ shutdownGraceMs: 1000 }),
): ServiceSpec<Config> {
  return {
    name: 'podmortem-test',
    about: { summary: 'A service of the tests.', schema, prefix: 'PODMORTEM_TEST_' },
    loadConfig,
    build,
    startFailedMessage: 'the test service failed to start',
  };
}

async function until(what: string, check: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !check(); i++) await sleep(5);
  if (!check()) throw new Error(`timed out waiting for ${what}`);
}

t.test(
  'bad configuration: one stderr line naming the variable, exit 2, nothing built or logged',
  async (t) => {
    const f = fakeProcess();
    let built = false;
    const code = await runService(
      spec(
        () => {
          built = true;
          return { components: [] };
        },
        () => {
          throw new ConfigError('PODMORTEM_TEST_PORT', 'must be a number, got "x"');
        },
      ),
      f.proc,
    );
    t.equal(code, 2);
    t.same(f.exits, [2]);
    t.same(f.stderr, ['podmortem-test: configuration: PODMORTEM_TEST_PORT: must be a number, got "x"\n']);
    t.notOk(built);
    t.same(f.lines, []);
  },
);

t.test(
  'components start in order, the running line once all are up; SIGTERM stops them in reverse, exit 0',
  async (t) => {
    const f = fakeProcess();
    const events: string[] = [];
    const done = runService(
      spec(() => ({
        components: [part('a', events), part('b', events)],
        running: () => ({ fields: { port: 1 }, message: 'test service running' }),
      })),
      f.proc,
    );
    await until('running', () => f.logged('test service running').length === 1);
    t.match(f.logged('test service running')[0], { port: 1, name: 'podmortem-test' });
    f.signals.emit('SIGTERM', 'SIGTERM');
    f.signals.emit('SIGTERM', 'SIGTERM');
    t.equal(await done, 0);
    t.same(f.exits, [0]);
    t.same(events, ['start a', 'start b', 'shutdown b', 'shutdown a']);
    t.equal(f.logged('shutting down').length, 1, 'a second signal changes nothing');
    t.match(f.logged('shutting down')[0], { reason: 'SIGTERM' });
    t.equal(f.logged('stopped').length, 1);
  },
);

t.test('a failed start: a fatal line with the error, what started is shut down, exit 1', async (t) => {
  const f = fakeProcess();
  const events: string[] = [];
  const code = await runService(
    spec(() => ({
      components: [
        part('a', events),
        part('b', events, () => Promise.reject(new PodmortemError('PM_ERR_TEST', 'no b'))),
        part('c', events),
      ],
      running: () => ({ fields: {}, message: 'test service running' }),
    })),
    f.proc,
  );
  t.equal(code, 1);
  t.same(events, ['start a', 'start b', 'shutdown c', 'shutdown b', 'shutdown a']);
  t.match(f.logged('the test service failed to start'), [{ level: 60, err: { code: 'PM_ERR_TEST' } }]);
  t.same(f.logged('test service running'), []);
});

t.test('a build that throws is a failed start too', async (t) => {
  const f = fakeProcess();
  const code = await runService(
    spec(() => {
      throw new Error('no kubeconfig');
    }),
    f.proc,
  );
  t.equal(code, 1);
  t.match(f.logged('the test service failed to start'), [{ level: 60, err: { message: 'no kubeconfig' } }]);
});

t.test('fatal() from a running component stops the service with exit 1', async (t) => {
  const f = fakeProcess();
  const events: string[] = [];
  let ctx: ServiceContext<Config> | undefined;
  const done = runService(
    spec((c) => {
      ctx = c;
      return { components: [part('consumer', events)], running: () => ({ fields: {}, message: 'up' }) };
    }),
    f.proc,
  );
  await until('running', () => f.logged('up').length === 1);
  ctx?.fatal('consumer stopped for good');
  t.equal(await done, 1);
  t.match(f.logged('shutting down'), [{ reason: 'consumer stopped for good' }]);
  t.same(events, ['start consumer', 'shutdown consumer']);
});

t.test('SIGTERM while a component is still starting: a clean stop, not a failed start', async (t) => {
  const f = fakeProcess();
  const abort = new AbortController();
  const waiting: Component = {
    name: 'waiting',
    start: () => sleep(60_000, undefined, { signal: abort.signal }),
    shutdown: async () => abort.abort(),
  };
  const done = runService(
    spec(() => ({ components: [waiting] })),
    f.proc,
  );
  await sleep(20);
  f.signals.emit('SIGINT', 'SIGINT');
  t.equal(await done, 0);
  t.same(
    f.lines.filter((l) => l.level === 60),
    [],
    'no fatal line',
  );
});

t.test('a component that ignores its deadline does not keep the process past the grace', async (t) => {
  const f = fakeProcess();
  const stuck: Component = {
    name: 'stuck',
    start: () => Promise.resolve(),
    shutdown: () => new Promise(() => undefined),
  };
  const done = runService(
    spec(
      () => ({ components: [stuck], running: () => ({ fields: {}, message: 'up' }) }),
      () => ({ shutdownGraceMs: 50 }),
    ),
    f.proc,
  );
  await until('running', () => f.logged('up').length === 1);
  const at = Date.now();
  f.signals.emit('SIGTERM', 'SIGTERM');
  t.equal(await done, 0);
  t.ok(Date.now() - at < 5_000, 'exited soon after the grace');
  t.match(f.logged('shutdown overran its grace; exiting anyway'), [{ level: 50, graceMs: 50 }]);
});

t.test('--version and --help answer on stdout, exit 0, and nothing is loaded or built', async (t) => {
  for (const argv of [['--version'], ['--help'], ['-h'], ['--version', '--help']]) {
    const f = fakeProcess({ argv, env: { PODMORTEM_TEST_PORT: '1' } });
    let loaded = false;
    const code = await runService(
      spec(
        () => ({ components: [] }),
        () => {
          loaded = true;
          throw new ConfigError('PODMORTEM_TEST_PORT', 'bad');
        },
      ),
      f.proc,
    );
    t.equal(code, 0, argv.join(' '));
    t.same(f.exits, [0]);
    t.notOk(loaded, 'no configuration loaded');
    t.same(f.stderr, []);
    t.same(f.lines, [], 'nothing logged, not even the unknown variable');
    // --help wins over --version.
    if (argv.every((a) => a === '--version')) t.same(f.stdout, [`podmortem-test ${version}\n`]);
    else
      t.equal(
        f.stdout.join(''),
        [
          `podmortem-test ${version}`,
          '',
          'A service of the tests.',
          '',
          'Usage: node indexer/src/main.ts [--help | --version]',
          '',
          'Settings are environment variables, shown with their defaults. A bad value stops',
          'the service before it starts, with exit status 2 and one line naming the',
          'variable; a PODMORTEM_TEST_* variable that is not one of these is logged as a',
          'warning at start-up.',
          '',
          '  PODMORTEM_TEST_SHUTDOWN_GRACE_MS=1000',
          '      Shutdown grace',
          '  PODMORTEM_TEST_LISTEN_PORT=8080',
          '      HTTP port',
          '',
        ].join('\n'),
      );
  }
});

t.test('any other argument: one stderr line naming it, exit 2', async (t) => {
  for (const [argv, bad] of [
    [['--verbose'], '--verbose'],
    [['--help', 'start'], 'start'],
  ] as const) {
    const f = fakeProcess({ argv: [...argv] });
    const code = await runService(
      spec(() => ({ components: [] })),
      f.proc,
    );
    t.equal(code, 2);
    t.same(f.stderr, [`podmortem-test: unknown argument "${bad}"; see --help\n`]);
    t.same(f.stdout, []);
  }
});

t.test(
  "a variable of the service's prefix it does not know: one warning naming the closest, then it runs",
  async (t) => {
    const f = fakeProcess({
      env: { PODMORTEM_TEST_LISTEN_PROT: '9000', PODMORTEM_OTHER_PORT: '1', PODMORTEM_TEST_LISTEN_PORT: '1' },
    });
    const done = runService(
      spec(() => ({ components: [], running: () => ({ fields: {}, message: 'up' }) })),
      f.proc,
    );
    await until('running', () => f.logged('up').length === 1);
    f.signals.emit('SIGTERM', 'SIGTERM');
    t.equal(await done, 0);
    const warnings = f.lines.filter((l) => l.level === 40);
    t.same(
      warnings.map((l) => [l.msg, l.variable, l.closest]),
      [
        [
          'PODMORTEM_TEST_LISTEN_PROT is not a setting of podmortem-test; did you mean PODMORTEM_TEST_LISTEN_PORT?',
          'PODMORTEM_TEST_LISTEN_PROT',
          'PODMORTEM_TEST_LISTEN_PORT',
        ],
      ],
      'once, and not for another prefix',
    );
    t.notMatch(JSON.stringify(warnings), '9000', 'the value is not logged');
  },
);

t.test('a configuration message of several lines is still one line on stderr', async (t) => {
  const f = fakeProcess();
  const code = await runService(
    spec(
      () => ({ components: [] }),
      () => {
        throw new ConfigError('PODMORTEM_TEST_PORT', 'is wrong:\n  twice');
      },
    ),
    f.proc,
  );
  t.equal(code, 2);
  t.same(f.stderr, ['podmortem-test: configuration: PODMORTEM_TEST_PORT: is wrong: twice\n']);
});

t.test('without its settings (no `about`), --help shows the usage only', async (t) => {
  const f = fakeProcess({ argv: ['--help'] });
  const { about, ...bare } = spec(() => ({ components: [] }));
  t.ok(about);
  t.equal(await runService(bare, f.proc), 0);
  t.same(f.stdout, [`podmortem-test ${version}\n\nUsage: node indexer/src/main.ts [--help | --version]\n`]);
});
