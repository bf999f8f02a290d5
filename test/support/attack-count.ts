import { request as httpRequest } from 'node:http';
import { gunzipSync, zstdDecompressSync } from 'node:zlib';
import type { Test } from 'tap';
import type { SeededCrash } from './query-api.ts';

// What every attack test counts and prints in one summary line: requests sent, leaks (a byte or
// name of a namespace the caller may not read found in an answer), hangs (a request not answered
// within the hang bound) and server errors. Each request goes through `send`, whose AbortSignal
// timeout is the hang detector: a request still open after HANG_MS is counted and reported, not
// waited for. HANG_MS is no speed target; it is far beyond any answer of a healthy API.

export const HANG_MS = 20_000;

/** What a tenant's crash is recognised by in an answer: its ids, pod uid and stored bytes. */
export function secretsOf(crash: SeededCrash, buildId?: string): Buffer[] {
  const secrets: Buffer[] = [Buffer.from(crash.event.crash.id)];
  if (crash.event.kubernetes) secrets.push(Buffer.from(crash.event.kubernetes.pod.uid));
  if (buildId) secrets.push(Buffer.from(buildId));
  // 64 bytes from the middle of the stored (compressed, random) dump and of the raw core: no
  // other answer holds them by chance.
  for (const bytes of [crash.stored, crash.raw]) {
    if (bytes && bytes.length >= 128) secrets.push(bytes.subarray(32, 96));
  }
  return secrets;
}

/** The body as sent and, when it is gzip or zstd, decompressed (a tar.gz, a raw dump). */
function views(body: Buffer): Buffer[] {
  const out = [body];
  try {
    if (body[0] === 0x1f && body[1] === 0x8b) out.push(gunzipSync(body));
    else if (body.readUInt32LE(0) === 0xfd2fb528) out.push(zstdDecompressSync(body));
  } catch {
    // Not decompressible: the body as sent is searched alone.
  }
  return out;
}

export function leaksIn(body: Buffer, secrets: Buffer[]): Buffer | undefined {
  for (const view of views(body)) {
    const found = secrets.find((s) => view.includes(s));
    if (found) return found;
  }
  return undefined;
}

/** A GET or HEAD from a local address of the caller's choice (any of 127/8 on loopback). */
function sendFrom(
  from: string,
  url: string,
  init: RequestInit,
): Promise<[{ status: number; headers: Headers }, Buffer]> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      url,
      {
        method: init.method ?? 'GET',
        headers: init.headers as Record<string, string>,
        localAddress: from,
        signal: AbortSignal.timeout(HANG_MS),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.once('error', reject);
        res.once('end', () => {
          const headers = new Headers();
          for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') headers.set(k, v);
          resolve([{ status: res.statusCode ?? 0, headers }, Buffer.concat(chunks)]);
        });
      },
    );
    req.once('error', reject);
    req.end();
  });
}

export interface Answer {
  status: number;
  body: Buffer;
  headers: Headers;
}

export class AttackCounter {
  requests = 0;
  leaks = 0;
  hangs = 0;
  serverErrors = 0;
  /** 5xx answers a test expects (a 503 while the Kubernetes API is down): printed, not failed. */
  documented5xx = 0;
  readonly surface: string;
  private readonly notes: string[] = [];

  constructor(surface: string) {
    this.surface = surface;
  }

  /**
   * Sends one request; counts it, a hang (no answer within HANG_MS), a 5xx (unless `expect5xx`,
   * for a 503 that is the documented answer of an attack on a backend), and a leak of `secrets`.
   * Resolves undefined for a hang.
   */
  async send(
    url: string,
    init: RequestInit & { secrets?: Buffer[]; expect5xx?: number[]; from?: string } = {},
  ): Promise<Answer | undefined> {
    const { secrets = [], expect5xx = [], from, ...request } = init;
    this.requests++;
    const what = `${request.method ?? 'GET'} ${url.length > 160 ? `${url.slice(0, 160)}…` : url}`;
    let res: { status: number; headers: Headers };
    let body: Buffer;
    try {
      if (from === undefined) {
        const answer = await fetch(url, { ...request, signal: AbortSignal.timeout(HANG_MS) });
        body = Buffer.from(await answer.arrayBuffer());
        res = answer;
      } else {
        [res, body] = await sendFrom(from, url, request);
      }
    } catch (err) {
      if (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')) {
        this.hangs++;
        this.note(`hang: ${what} not answered within ${HANG_MS} ms`);
        return undefined;
      }
      throw err;
    }
    if (expect5xx.includes(res.status)) this.documented5xx++;
    else if (res.status >= 500) {
      this.serverErrors++;
      this.note(`5xx: ${what} → ${res.status} ${body.toString('utf8', 0, 300)}`);
    }
    // An answer echoing the request (a 404 naming what was asked for) tells nothing new.
    let asked = Buffer.from(url);
    try {
      asked = Buffer.from(decodeURIComponent(url));
    } catch {
      // Not percent-decodable: compared as sent.
    }
    const leaked = leaksIn(
      body,
      secrets.filter((s) => !asked.includes(s)),
    );
    if (leaked) {
      this.leaks++;
      this.note(
        `leak: ${what} → ${res.status} holds ${JSON.stringify(leaked.toString('latin1').slice(0, 40))}`,
      );
    }
    return { status: res.status, body, headers: res.headers };
  }

  note(line: string): void {
    if (this.notes.length < 50) this.notes.push(line);
  }

  /** Prints the summary line and asserts the zeros, naming the first offenders. */
  report(t: Test, extra: Record<string, number> = {}): void {
    const more = Object.entries(extra).map(([k, v]) => `, ${k} ${v}`);
    t.comment(
      `attack ${this.surface}: requests ${this.requests}, leaks ${this.leaks}, hangs ${this.hangs}, ` +
        `5xx ${this.serverErrors}${more.join('')}` +
        (this.documented5xx > 0 ? ` (besides ${this.documented5xx} documented 503s of a backend down)` : ''),
    );
    const detail = this.notes.join('\n');
    t.equal(this.leaks, 0, `no leak${detail ? `\n${detail}` : ''}`);
    t.equal(this.hangs, 0, 'no hang');
    t.equal(this.serverErrors, 0, 'no 5xx');
    for (const [k, v] of Object.entries(extra)) t.equal(v, 0, `${k} 0`);
  }
}
