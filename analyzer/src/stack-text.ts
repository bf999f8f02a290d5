// The text eu-stack (elfutils 0.188) prints with `-b -m -s -i`, parsed into threads. Its shape:
//
//   PID 19672 - core
//   TID 19680:
//   #0  0x0000560aaf653185 parse_header - segv
//       [7e460a71ca49eac848a509f151224bc8eef85947]@0x560aaf652000+0x1185
//       /tmp/segv.c:7:11
//
// A frame line carries the pc, then the function (absent when unsymbolized) and ` - module`
// (absent when the pc lies in no module); the indented lines after it are the module's build id,
// load address and the pc's offset in the module, then the source position where DWARF has one.
// For every frame but the innermost, eu-stack has already taken one off the offset (a return
// address points after the call) so that it names the calling instruction.

export interface StackFrame {
  /** The program counter as eu-stack printed it, `0x` and lower-case hex. */
  pc: string;
  /** File name of the module (basename: eu-stack prints a full path when it had no file for it). */
  module?: string;
  build_id?: string;
  /** Demangled; for an inlined call, the inlined function (it shares the pc of its caller). */
  function?: string;
  /** Offset of the instruction within the module. */
  offset?: number;
  file?: string;
  line?: number;
  column?: number;
}

export interface StackThread {
  tid: number;
  /** The thread that got the signal: the first thread of a Linux core (see unwinder.ts). */
  crashing: boolean;
  frames: StackFrame[];
  /** Deeper frames were cut at the frame limit. */
  truncated: boolean;
  /** Why the unwind of this thread stopped early, as eu-stack said it. */
  error?: string;
}

const THREAD_RE = /^TID (\d+):$/;
const FRAME_RE = /^#(\d+)\s+0x([0-9a-f]+)(.*)$/;
const BUILD_ID_RE = /^ {4}\[([0-9a-f]+)\]@0x[0-9a-f]+\+0x([0-9a-f]+)$/;
const SOURCE_RE = /^ {4}(.+?):(\d+)(?::(\d+))?$/;
const LIMIT_RE = /^eu-stack: tid (\d+): shown max number of frames/;
const THREAD_ERROR_RE = /^eu-stack: dwfl_thread_getframes tid (\d+) (.*)$/;

const basename = (path: string): string => path.slice(path.lastIndexOf('/') + 1);

function frameOf(pc: string, rest: string): StackFrame {
  const frame: StackFrame = { pc: `0x${BigInt(`0x${pc}`).toString(16)}` };
  const text = rest.trim();
  if (text.startsWith('- ')) {
    frame.module = basename(text.slice(2));
    return frame;
  }
  const split = text.lastIndexOf(' - ');
  if (split < 0) {
    if (text !== '') frame.function = text;
    return frame;
  }
  frame.function = text.slice(0, split);
  frame.module = basename(text.slice(split + 3));
  return frame;
}

/**
 * The threads of eu-stack's standard output, in its order, with the per-thread notes of its
 * standard error (frame limit reached, unwind error). At most `maxFrames` frames per thread are
 * kept whatever the unwinder printed.
 */
export function parseStackText(stdout: string, stderr: string, maxFrames: number): StackThread[] {
  const threads: StackThread[] = [];
  let thread: StackThread | undefined;
  let frame: StackFrame | undefined;
  for (const line of stdout.split('\n')) {
    const t = THREAD_RE.exec(line);
    if (t) {
      thread = { tid: Number(t[1]), crashing: threads.length === 0, frames: [], truncated: false };
      threads.push(thread);
      frame = undefined;
      continue;
    }
    const f = FRAME_RE.exec(line);
    if (f && thread) {
      frame = undefined;
      if (thread.frames.length >= maxFrames) {
        thread.truncated = true;
        continue;
      }
      frame = frameOf(f[2] ?? '0', f[3] ?? '');
      thread.frames.push(frame);
      continue;
    }
    if (!frame) continue;
    const b = BUILD_ID_RE.exec(line);
    if (b) {
      frame.build_id = b[1];
      frame.offset = Number.parseInt(b[2] ?? '', 16);
      continue;
    }
    const s = SOURCE_RE.exec(line);
    if (s) {
      frame.file = s[1];
      frame.line = Number(s[2]);
      if (s[3] !== undefined) frame.column = Number(s[3]);
    }
  }
  const byTid = new Map(threads.map((th) => [th.tid, th]));
  for (const line of stderr.split('\n')) {
    const limit = LIMIT_RE.exec(line);
    const limited = limit && byTid.get(Number(limit[1]));
    if (limited) limited.truncated = true;
    const error = THREAD_ERROR_RE.exec(line);
    const failed = error && byTid.get(Number(error[1]));
    if (failed && error[2] !== undefined) failed.error = error[2];
  }
  return threads;
}
