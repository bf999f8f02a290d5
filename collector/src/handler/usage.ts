import { HANDLER_CONFIG_KEYS } from '../handler-config.ts';

// What the handler says to a person who runs it (`podmortem-handler --help` or --version): the
// kernel never asks. The runtime is imported here only, when asked: it is too slow to load for
// the kernel's calls, which keep the crashing process waiting.

/** The text of `--help` or `--version`. */
export async function handlerUsage(asked: 'help' | 'version', script: string | undefined): Promise<string> {
  const { entryPath, podmortemVersion, shellWord, wrapText } = await import('@podmortem/contract/runtime');
  const head = `podmortem-handler ${podmortemVersion()}`;
  if (asked === 'version') return `${head}\n`;
  const width = 80;
  const keys = Object.entries(HANDLER_CONFIG_KEYS).map(([key, { default: def, description }]) =>
    [`  ${key}=${shellWord(String(def))}`, ...wrapText(description, width, '      ')].join('\n'),
  );
  return [
    head,
    '',
    ...wrapText(
      'The core handler: the kernel runs it once per crash through kernel.core_pattern, on the host, with the core on stdin. It writes the core, compressed and within its limits, and the crash’s facts into the node spool, where the collector agent (which installs it) takes them over.',
      width,
    ),
    '',
    `Usage: node ${entryPath(script)} [--config <file>] [--help | --version]`,
    ...wrapText(
      'The kernel runs it with --config <file> and the core_pattern fields %P %p %I %i %s %t %c %e %E %h %u %g.',
      width,
    ),
    '',
    ...wrapText(
      'Settings are the keys of the JSON file named by --config (the wrapper gives its own folder’s podmortem-handler.json, which the agent writes from its configuration; without --config, /etc/podmortem/handler.json), shown with their defaults. A missing file, an unknown key or a bad value is logged and the default used: a crash is never lost to the configuration.',
      width,
    ),
    '',
    ...keys,
    '',
  ].join('\n');
}
