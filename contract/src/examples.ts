import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CrashEvent } from './crash-event.ts';

// The shipped example events, for tests of every service and for the demo's seed data.

const examplesDir = fileURLToPath(new URL('../examples', import.meta.url));

export interface InvalidExample {
  name: string;
  /** The field the validator must name. */
  field: string;
  why: string;
  event: unknown;
}

function readJsonDir(dir: string): { name: string; value: unknown }[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => ({
      name: f.slice(0, -'.json'.length),
      value: JSON.parse(readFileSync(join(dir, f), 'utf8')) as unknown,
    }));
}

/** Valid examples by name. They are checked by the contract tests, so the cast is tested. */
export function validExamples(): { name: string; event: CrashEvent }[] {
  return readJsonDir(join(examplesDir, 'valid')).map(({ name, value }) => ({
    name,
    event: value as CrashEvent,
  }));
}

export function invalidExamples(): InvalidExample[] {
  return readJsonDir(join(examplesDir, 'invalid')).map(({ name, value }) => ({
    name,
    ...(value as Omit<InvalidExample, 'name'>),
  }));
}
