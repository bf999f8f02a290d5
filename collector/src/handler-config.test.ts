import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import {
  defaultHandlerConfig,
  handlerConfigTable,
  loadHandlerConfig,
  resolveHandlerConfig,
} from './handler-config.ts';

t.test('defaults fill what the file leaves out; the log goes into the spool', async (t) => {
  const { config, problems } = resolveHandlerConfig({ spoolDir: '/srv/spool', maxCoreBytes: 1024 });
  t.same(problems, []);
  t.equal(config.logFile, '/srv/spool/handler.log');
  t.equal(config.maxCoreBytes, 1024);
  t.equal(config.compression, defaultHandlerConfig().compression);
});

t.test('bad values and unknown keys fall back to defaults and are named', async (t) => {
  const { config, problems } = resolveHandlerConfig({
    spoolDir: 'relative',
    compression: 'gzip',
    zstdLevel: 99,
    rateLimitDumps: -1,
    colour: 'blue',
  });
  t.equal(config.spoolDir, defaultHandlerConfig().spoolDir);
  t.equal(config.compression, 'zstd');
  t.equal(config.zstdLevel, 3);
  t.equal(config.rateLimitDumps, 5);
  t.match(problems, [
    /spoolDir: "relative" is not valid/,
    /compression: "gzip"/,
    /zstdLevel: 99/,
    /rateLimitDumps: -1/,
    /unknown configuration key colour/,
  ]);
  t.match(resolveHandlerConfig([1, 2]).problems, [/not a JSON object/]);
});

t.test('an unreadable or non-JSON file gives the defaults and says why', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'pm-hcfg-'));
  t.teardown(() => rm(dir, { recursive: true }));
  t.match((await loadHandlerConfig(join(dir, 'absent.json'))).problems, [/unreadable \(ENOENT/]);
  await writeFile(join(dir, 'bad.json'), '{ not json');
  const bad = await loadHandlerConfig(join(dir, 'bad.json'));
  t.match(bad.problems, [/is not JSON/]);
  t.same(bad.config, resolveHandlerConfig({}).config);
});

t.test('the README table lists every key with its default', async (t) => {
  const table = handlerConfigTable();
  for (const key of Object.keys(defaultHandlerConfig())) t.match(table, `| \`${key}\` |`);
});
