import t from 'tap';
import { readFileSync } from 'node:fs';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { renderCrashEventSchema, CRASH_EVENT_SCHEMA_FILE } from './schema-file.ts';

t.test('the committed JSON Schema is what the TypeBox definition generates', async (t) => {
  t.equal(readFileSync(CRASH_EVENT_SCHEMA_FILE, 'utf8'), renderCrashEventSchema());
});

t.test('the committed JSON Schema is a valid draft 2020-12 schema', async (t) => {
  const ajv = new Ajv2020({ strict: false, validateFormats: false });
  const schema = JSON.parse(readFileSync(CRASH_EVENT_SCHEMA_FILE, 'utf8')) as object;
  t.ok(ajv.validateSchema(schema), JSON.stringify(ajv.errors));
});
