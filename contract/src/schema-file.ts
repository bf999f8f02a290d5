import { fileURLToPath } from 'node:url';
import { CrashEventSchema } from './crash-event.ts';

export const CRASH_EVENT_SCHEMA_FILE = fileURLToPath(new URL('../crash-event.schema.json', import.meta.url));

/** The published JSON Schema (draft 2020-12) of crash event v1, as written to the repository. */
export function renderCrashEventSchema(): string {
  const document = {
    $comment: 'Generated from contract/src/crash-event.ts by `npm run generate -w contract`; do not edit.',
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    ...CrashEventSchema,
  };
  return JSON.stringify(document, null, 2) + '\n';
}
