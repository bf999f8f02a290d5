import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { generatedFiles, REPO_DIR } from './generated-files.ts';
import { GENERATE_COMMAND } from './generated-note.ts';

// `npm run grafana`: writes the dashboards, provisioning files and Kibana saved objects under
// grafana/. `--check` writes nothing and fails, naming each file, when one differs.

const USAGE = `usage: ${GENERATE_COMMAND} [-- --check]
  Writes grafana/dashboards/*.json, grafana/provisioning/**/*.yaml and grafana/kibana/podmortem.ndjson
  from grafana/src.
  --check   write nothing; exit 1 naming every file that is missing or differs
  --help    this text`;

function readOrEmpty(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

async function main(argv: string[]): Promise<number> {
  let values: { check?: boolean; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { check: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const files = await generatedFiles();
  if (values.check) {
    const stale = files.filter((f) => readOrEmpty(join(REPO_DIR, f.path)) !== f.content).map((f) => f.path);
    for (const path of stale) process.stderr.write(`${path} is out of date: run ${GENERATE_COMMAND}\n`);
    return stale.length === 0 ? 0 : 1;
  }
  for (const f of files) {
    const path = join(REPO_DIR, f.path);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, f.content);
    process.stdout.write(`wrote ${f.path}\n`);
  }
  return 0;
}

if (import.meta.main) process.exitCode = await main(process.argv.slice(2));
