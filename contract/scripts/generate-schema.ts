// Writes crash-event.schema.json from the TypeBox definition (the one source of truth).
// `--check` compares instead of writing and exits 1 on any difference.
import { readFileSync, writeFileSync } from 'node:fs';
import { renderCrashEventSchema, CRASH_EVENT_SCHEMA_FILE } from '../src/schema-file.ts';

const rendered = renderCrashEventSchema();
if (process.argv.includes('--check')) {
  const current = readFileSync(CRASH_EVENT_SCHEMA_FILE, 'utf8');
  if (current !== rendered) {
    console.error(`${CRASH_EVENT_SCHEMA_FILE} is out of date: run npm run generate -w contract`);
    process.exit(1);
  }
} else {
  writeFileSync(CRASH_EVENT_SCHEMA_FILE, rendered);
  console.log(`wrote ${CRASH_EVENT_SCHEMA_FILE}`);
}
