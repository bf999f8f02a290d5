import type { KernelFacts } from './spool-entry.ts';

// The contract between the kernel, the agent that installs the handler and the handler itself: the
// handler's command line as the kernel builds it from kernel.core_pattern. The kernel splits
// the pattern on spaces before expanding the specifiers, so a comm or path with spaces stays one
// argument. %e and %E come escaped: the kernel writes '/' as '!'.
//
//   podmortem-handler [--config <file>] %P %p %I %i %s %t %c %e %E %h %u %g

type Field = keyof KernelFacts;
export type FieldKind = 'pid' | 'int' | 'limit' | 'text' | 'path';

/** Each kernel fact, the core_pattern specifier that passes it, and how the handler parses it; in order. */
export const CORE_PATTERN_FIELDS: readonly { key: Field; spec: string; kind: FieldKind }[] = [
  { key: 'pid', spec: '%P', kind: 'pid' },
  { key: 'nsPid', spec: '%p', kind: 'pid' },
  { key: 'tid', spec: '%I', kind: 'pid' },
  { key: 'nsTid', spec: '%i', kind: 'pid' },
  { key: 'signal', spec: '%s', kind: 'int' },
  { key: 'time', spec: '%t', kind: 'int' },
  { key: 'coreLimit', spec: '%c', kind: 'limit' },
  { key: 'comm', spec: '%e', kind: 'text' },
  { key: 'exePath', spec: '%E', kind: 'path' },
  { key: 'hostname', spec: '%h', kind: 'text' },
  { key: 'uid', spec: '%u', kind: 'int' },
  { key: 'gid', spec: '%g', kind: 'int' },
];

export const CORE_PATTERN_SPECIFIERS = CORE_PATTERN_FIELDS.map((f) => f.spec);

/** The kernel keeps at most 127 bytes of core_pattern (CORENAME_MAX_SIZE 128, with the NUL). */
export const CORE_PATTERN_MAX_BYTES = 127;

/** The kernel.core_pattern value that pipes cores to the handler at `handlerPath` (absolute). */
export function corePattern(handlerPath: string): string {
  if (!handlerPath.startsWith('/')) throw new RangeError(`handler path must be absolute: ${handlerPath}`);
  if (/[\s%]/.test(handlerPath))
    throw new RangeError(`handler path must not hold spaces or '%': ${handlerPath}`);
  const pattern = `|${handlerPath} ${CORE_PATTERN_SPECIFIERS.join(' ')}`;
  if (Buffer.byteLength(pattern) > CORE_PATTERN_MAX_BYTES)
    throw new RangeError(
      `core_pattern would be ${Buffer.byteLength(pattern)} bytes, over the kernel's ${CORE_PATTERN_MAX_BYTES}: install the handler under a shorter path than ${handlerPath}`,
    );
  return pattern;
}
