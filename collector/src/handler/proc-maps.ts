// /proc/<pid>/maps, read while the kernel holds the crashing process: which files it had mapped,
// where, and whether they had been deleted. One line per mapping:
//   55d0c0a00000-55d0c0a01000 r--p 00000000 fd:01 1234567      /usr/bin/app (deleted)
// The path is everything after the inode's padding (it may hold spaces; the kernel writes a
// newline in it as \012), and ' (deleted)' is the kernel's suffix for an unlinked file.

const LINE = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) ([0-9a-f]+) ([0-9a-f]+:[0-9a-f]+) (\d+)(?: +(.*))?$/;
const DELETED = ' (deleted)';

export interface Mapping {
  /** As the maps file and the map_files folder write them: lower-case hex, no 0x. */
  start: string;
  end: string;
  perms: string;
  /** Offset of the mapping in the file, in bytes. */
  offset: number;
  dev: string;
  inode: number;
  /** '' for anonymous memory; '[heap]', '[stack]', '[vdso]'… for the kernel's own. */
  path: string;
}

/** One mapped file: every mapping of the same file (device and inode), lowest address first. */
export interface MappedFileRanges {
  /** The path as the process saw it, without the kernel's ' (deleted)'. */
  path: string;
  deleted: boolean;
  dev: string;
  inode: number;
  mappings: Mapping[];
}

/** Mappings of a maps file; lines that do not parse are left out. */
export function parseProcMaps(text: string): Mapping[] {
  const out: Mapping[] = [];
  for (const line of text.split('\n')) {
    const m = LINE.exec(line);
    if (!m) continue;
    const [, start = '', end = '', perms = '', offset = '0', dev = '', inode = '0', path = ''] = m;
    out.push({ start, end, perms, offset: parseInt(offset, 16), dev, inode: Number(inode), path });
  }
  return out;
}

/** The files among the mappings (inode ≠ 0 and an absolute path), in order of first address. */
export function mappedFiles(mappings: Mapping[]): MappedFileRanges[] {
  const byFile = new Map<string, MappedFileRanges>();
  for (const m of mappings) {
    if (m.inode === 0 || !m.path.startsWith('/')) continue;
    const { path, deleted } = withoutDeletedSuffix(m.path);
    // Device and inode tell files apart that a path does not: a file replaced after it was mapped.
    const key = `${m.dev} ${m.inode} ${path}`;
    const file = byFile.get(key);
    if (file) file.mappings.push(m);
    else byFile.set(key, { path, deleted, dev: m.dev, inode: m.inode, mappings: [m] });
  }
  return [...byFile.values()];
}

/** A path with the kernel's ' (deleted)' taken off, and whether it was there. */
export function withoutDeletedSuffix(path: string): { path: string; deleted: boolean } {
  return path.endsWith(DELETED)
    ? { path: path.slice(0, -DELETED.length), deleted: true }
    : { path, deleted: false };
}
