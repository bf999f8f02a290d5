import { open, stat } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { Component } from '@podmortem/contract/runtime';

// Follows the handler's JSON-lines log into the agent's own log, so one `kubectl logs` of the
// DaemonSet pod shows what the handler did with each crash. Polls (the file lives on the host and
// is appended to by short-lived processes); starts at the end of what is already there, and
// starts over when the file was rotated (it shrank, or is another file).

export interface HandlerLogTailParams {
  file: string;
  logger: Logger;
  intervalMs?: number;
}

const MAX_READ = 1024 * 1024;
const LEVEL_NAMES: Record<number, 'info' | 'warn' | 'error'> = { 30: 'info', 40: 'warn', 50: 'error' };

export class HandlerLogTail implements Component {
  readonly name = 'handler-log-tail';
  private readonly p: HandlerLogTailParams;
  private timer: NodeJS.Timeout | undefined;
  private position = -1;
  private inode = -1;
  private partial = '';
  private polling: Promise<void> | undefined;

  constructor(params: HandlerLogTailParams) {
    this.p = params;
  }

  async start(): Promise<void> {
    if (this.timer) return;
    try {
      const s = await stat(this.p.file);
      this.position = s.size;
      this.inode = s.ino;
    } catch {
      this.position = 0;
    }
    this.timer = setInterval(() => void this.poll(), this.p.intervalMs ?? 1000);
  }

  async shutdown(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.polling;
  }

  poll(): Promise<void> {
    this.polling ??= this.read().finally(() => (this.polling = undefined));
    return this.polling;
  }

  private async read(): Promise<void> {
    let file;
    try {
      file = await open(this.p.file, 'r');
    } catch {
      return; // No crash yet.
    }
    try {
      const s = await file.stat();
      if (s.ino !== this.inode || s.size < this.position) {
        this.inode = s.ino;
        this.position = 0;
        this.partial = '';
      }
      while (this.position < s.size) {
        const buf = Buffer.alloc(Math.min(MAX_READ, s.size - this.position));
        const { bytesRead } = await file.read(buf, 0, buf.length, this.position);
        if (bytesRead === 0) break;
        this.position += bytesRead;
        const lines = (this.partial + buf.subarray(0, bytesRead).toString('utf8')).split('\n');
        this.partial = lines.pop() ?? '';
        for (const line of lines) this.forward(line);
      }
    } finally {
      await file.close();
    }
  }

  private forward(line: string): void {
    if (line.trim() === '') return;
    let entry: Record<string, unknown>;
    try {
      entry = JSON.parse(line) as Record<string, unknown>;
    } catch {
      this.p.logger.warn({ source: 'handler', line: line.slice(0, 2000) }, 'handler log line is not JSON');
      return;
    }
    const { level, msg, ...fields } = entry;
    // The agent's own logger stamps time and name.
    delete fields.time;
    delete fields.name;
    const method = LEVEL_NAMES[typeof level === 'number' ? level : 30] ?? 'info';
    this.p.logger[method]({ source: 'handler', ...fields }, typeof msg === 'string' ? msg : 'handler');
  }
}
