import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { until } from './poll.ts';

// A local OTLP/HTTP receiver for tests: POST /v1/logs in protobuf
// (application/x-protobuf, an ExportLogsServiceRequest) or JSON (application/json, the OTLP/JSON
// mapping), optionally gzipped; and POST /v1/traces in OTLP/JSON (what the query API's
// exporter-trace-otlp-http sends). It decodes the real payloads — the protobuf by its wire format
// and the field numbers of opentelemetry-proto (collector/logs/v1, logs/v1, common/v1,
// resource/v1) — and keeps every log record with its attributes. It can be made unreachable and
// reachable again on the same port, and can answer with an error status.

export type AttributeValue =
  | string
  | number
  | boolean
  | bigint
  | Uint8Array
  | null
  | AttributeValue[]
  | { [key: string]: AttributeValue };

/** What every received item carries: its own attributes, and where it came from. */
interface Received {
  attributes: Record<string, AttributeValue>;
  resource: Record<string, AttributeValue>;
  scope: { name: string; version: string };
}

export interface ReceivedLogRecord extends Received {
  format: 'protobuf' | 'json';
  timeUnixNano: bigint;
  observedTimeUnixNano: bigint;
  severityNumber: number;
  severityText: string;
  eventName: string;
  body: AttributeValue;
}

export interface ReceivedSpan extends Received {
  name: string;
  /** Hex, as the OTLP/JSON mapping writes trace and span ids. */
  traceId: string;
  spanId: string;
  parentSpanId: string;
  kind: number;
}

// ---- protobuf wire format -------------------------------------------------------------------

class Reader {
  pos = 0;
  readonly buf: Uint8Array;
  constructor(buf: Uint8Array) {
    this.buf = buf;
  }
  done(): boolean {
    return this.pos >= this.buf.length;
  }
  varint(): bigint {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (this.pos >= this.buf.length) throw new Error('truncated varint');
      if (shift > 63n) throw new Error('varint longer than 64 bits');
      const b = this.buf[this.pos++] ?? 0;
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result;
      shift += 7n;
    }
  }
  take(n: number): Uint8Array {
    if (n < 0 || this.pos + n > this.buf.length) throw new Error(`truncated field: ${n} bytes wanted`);
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  bytes(): Uint8Array {
    return this.take(Number(this.varint()));
  }
  fixed64(): bigint {
    return Buffer.from(this.take(8)).readBigUInt64LE();
  }
  /** Calls `field` with each (number, wire type); unknown fields must be passed over with `skipField`. */
  fields(field: (n: number, wire: number) => void): void {
    while (!this.done()) {
      const tag = Number(this.varint());
      const n = tag >>> 3;
      const wire = tag & 7;
      if (n === 0) throw new Error('field number 0');
      field(n, wire);
    }
  }
  skipField(wire: number): void {
    if (wire === 0) this.varint();
    else if (wire === 1) this.take(8);
    else if (wire === 2) this.bytes();
    else if (wire === 5) this.take(4);
    else throw new Error(`unsupported wire type ${wire}`);
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function expectWire(wire: number, want: number, what: string): void {
  if (wire !== want) throw new Error(`${what}: wire type ${wire}, expected ${want}`);
}

function pbAnyValue(buf: Uint8Array): AttributeValue {
  const r = new Reader(buf);
  let value: AttributeValue = null;
  r.fields((n, wire) => {
    switch (n) {
      case 1:
        expectWire(wire, 2, 'AnyValue.string_value');
        value = utf8.decode(r.bytes());
        break;
      case 2:
        expectWire(wire, 0, 'AnyValue.bool_value');
        value = r.varint() !== 0n;
        break;
      case 3: {
        expectWire(wire, 0, 'AnyValue.int_value');
        const v = BigInt.asIntN(64, r.varint());
        value = v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
        break;
      }
      case 4:
        expectWire(wire, 1, 'AnyValue.double_value');
        value = Buffer.from(r.take(8)).readDoubleLE();
        break;
      case 5: {
        expectWire(wire, 2, 'AnyValue.array_value');
        const items: AttributeValue[] = [];
        const a = new Reader(r.bytes());
        a.fields((m, w) => {
          if (m === 1 && w === 2) items.push(pbAnyValue(a.bytes()));
          else a.skipField(w);
        });
        value = items;
        break;
      }
      case 6: {
        expectWire(wire, 2, 'AnyValue.kvlist_value');
        const kv: Record<string, AttributeValue> = {};
        const l = new Reader(r.bytes());
        l.fields((m, w) => {
          if (m === 1 && w === 2) pbKeyValue(l.bytes(), kv);
          else l.skipField(w);
        });
        value = kv;
        break;
      }
      case 7:
        expectWire(wire, 2, 'AnyValue.bytes_value');
        value = r.bytes();
        break;
      default:
        r.skipField(wire);
    }
  });
  return value;
}

function pbKeyValue(buf: Uint8Array, into: Record<string, AttributeValue>): void {
  const r = new Reader(buf);
  let key = '';
  let value: AttributeValue = null;
  r.fields((n, wire) => {
    if (n === 1 && wire === 2) key = utf8.decode(r.bytes());
    else if (n === 2 && wire === 2) value = pbAnyValue(r.bytes());
    else r.skipField(wire);
  });
  into[key] = value;
}

function pbAttributesOf(buf: Uint8Array, attributesField: number): Record<string, AttributeValue> {
  const out: Record<string, AttributeValue> = {};
  const r = new Reader(buf);
  r.fields((n, wire) => {
    if (n === attributesField && wire === 2) pbKeyValue(r.bytes(), out);
    else r.skipField(wire);
  });
  return out;
}

function pbScope(buf: Uint8Array): { name: string; version: string } {
  const scope = { name: '', version: '' };
  const r = new Reader(buf);
  r.fields((n, wire) => {
    if (n === 1 && wire === 2) scope.name = utf8.decode(r.bytes());
    else if (n === 2 && wire === 2) scope.version = utf8.decode(r.bytes());
    else r.skipField(wire);
  });
  return scope;
}

function pbLogRecord(
  buf: Uint8Array,
  resource: Record<string, AttributeValue>,
  scope: { name: string; version: string },
): ReceivedLogRecord {
  const rec: ReceivedLogRecord = {
    format: 'protobuf',
    timeUnixNano: 0n,
    observedTimeUnixNano: 0n,
    severityNumber: 0,
    severityText: '',
    eventName: '',
    body: null,
    attributes: {},
    resource,
    scope,
  };
  const r = new Reader(buf);
  r.fields((n, wire) => {
    switch (n) {
      case 1:
        expectWire(wire, 1, 'LogRecord.time_unix_nano');
        rec.timeUnixNano = r.fixed64();
        break;
      case 11:
        expectWire(wire, 1, 'LogRecord.observed_time_unix_nano');
        rec.observedTimeUnixNano = r.fixed64();
        break;
      case 2:
        expectWire(wire, 0, 'LogRecord.severity_number');
        rec.severityNumber = Number(r.varint());
        break;
      case 3:
        expectWire(wire, 2, 'LogRecord.severity_text');
        rec.severityText = utf8.decode(r.bytes());
        break;
      case 5:
        expectWire(wire, 2, 'LogRecord.body');
        rec.body = pbAnyValue(r.bytes());
        break;
      case 6:
        expectWire(wire, 2, 'LogRecord.attributes');
        pbKeyValue(r.bytes(), rec.attributes);
        break;
      case 12:
        expectWire(wire, 2, 'LogRecord.event_name');
        rec.eventName = utf8.decode(r.bytes());
        break;
      default:
        r.skipField(wire);
    }
  });
  return rec;
}

/** Decodes an ExportLogsServiceRequest. */
export function decodeProtobufLogs(buf: Uint8Array): ReceivedLogRecord[] {
  const out: ReceivedLogRecord[] = [];
  const request = new Reader(buf);
  request.fields((n, wire) => {
    if (n !== 1 || wire !== 2) return request.skipField(wire);
    const rl = new Reader(request.bytes()); // ResourceLogs
    let resource: Record<string, AttributeValue> = {};
    const scopeLogs: Uint8Array[] = [];
    rl.fields((m, w) => {
      if (m === 1 && w === 2) resource = pbAttributesOf(rl.bytes(), 1);
      else if (m === 2 && w === 2) scopeLogs.push(rl.bytes());
      else rl.skipField(w);
    });
    for (const sl of scopeLogs) {
      const s = new Reader(sl);
      let scope = { name: '', version: '' };
      const records: Uint8Array[] = [];
      s.fields((m, w) => {
        if (m === 1 && w === 2) scope = pbScope(s.bytes());
        else if (m === 2 && w === 2) records.push(s.bytes());
        else s.skipField(w);
      });
      for (const rec of records) out.push(pbLogRecord(rec, resource, scope));
    }
  });
  return out;
}

// ---- OTLP/JSON ----------------------------------------------------------------------------

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const asText = (v: unknown): string => (typeof v === 'string' ? v : '');

function jsonArray(v: unknown, what: string): unknown[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw new Error(`${what} must be an array`);
  return v;
}

function jsonInt(v: unknown, what: string): bigint {
  if (v === undefined) return 0n;
  if ((typeof v === 'string' && /^-?\d+$/.test(v)) || (typeof v === 'number' && Number.isInteger(v)))
    return BigInt(v);
  throw new Error(`${what} must be an integer (a number or a decimal string)`);
}

function jsonAnyValue(v: unknown): AttributeValue {
  if (!isObject(v)) throw new Error('AnyValue must be an object');
  if ('stringValue' in v) return String(v.stringValue);
  if ('boolValue' in v) return Boolean(v.boolValue);
  if ('intValue' in v) {
    const n = jsonInt(v.intValue, 'intValue');
    return n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n;
  }
  if ('doubleValue' in v) return Number(v.doubleValue);
  if ('arrayValue' in v) {
    const a = v.arrayValue;
    return jsonArray(isObject(a) ? a.values : undefined, 'arrayValue.values').map(jsonAnyValue);
  }
  if ('kvlistValue' in v) {
    const l = v.kvlistValue;
    return jsonAttributes(isObject(l) ? l.values : undefined);
  }
  if ('bytesValue' in v) return Buffer.from(String(v.bytesValue), 'base64');
  return null;
}

function jsonAttributes(v: unknown): Record<string, AttributeValue> {
  const out: Record<string, AttributeValue> = {};
  for (const kv of jsonArray(v, 'attributes')) {
    if (!isObject(kv) || typeof kv.key !== 'string') throw new Error('attribute must have a string key');
    out[kv.key] = kv.value === undefined ? null : jsonAnyValue(kv.value);
  }
  return out;
}

type Origin = Pick<Received, 'resource' | 'scope'>;

/**
 * Walks an OTLP/JSON export request, resource → scope → item, the same for every signal:
 * `kinds` names its three levels, e.g. resourceLogs, scopeLogs, logRecords.
 */
function eachJsonItem<T>(
  text: string,
  kinds: [string, string, string],
  read: (item: Json, origin: Origin) => T,
): T[] {
  const [resources, scopes, items] = kinds;
  const body: unknown = JSON.parse(text);
  if (!isObject(body)) throw new Error('request must be a JSON object');
  const out: T[] = [];
  for (const r of jsonArray(body[resources], resources)) {
    if (!isObject(r)) throw new Error(`${resources}[] must be objects`);
    const resource = jsonAttributes(isObject(r.resource) ? r.resource.attributes : undefined);
    for (const sl of jsonArray(r[scopes], scopes)) {
      if (!isObject(sl)) throw new Error(`${scopes}[] must be objects`);
      const s = isObject(sl.scope) ? sl.scope : {};
      const scope = { name: asText(s.name), version: asText(s.version) };
      for (const item of jsonArray(sl[items], items)) {
        if (!isObject(item)) throw new Error(`${items}[] must be objects`);
        out.push(read(item, { resource, scope }));
      }
    }
  }
  return out;
}

/** Decodes an ExportLogsServiceRequest in the OTLP/JSON mapping. */
export function decodeJsonLogs(text: string): ReceivedLogRecord[] {
  return eachJsonItem(text, ['resourceLogs', 'scopeLogs', 'logRecords'], (lr, origin) => ({
    format: 'json',
    timeUnixNano: jsonInt(lr.timeUnixNano, 'timeUnixNano'),
    observedTimeUnixNano: jsonInt(lr.observedTimeUnixNano, 'observedTimeUnixNano'),
    severityNumber: Number(lr.severityNumber ?? 0),
    severityText: asText(lr.severityText),
    eventName: asText(lr.eventName),
    body: lr.body === undefined ? null : jsonAnyValue(lr.body),
    attributes: jsonAttributes(lr.attributes),
    ...origin,
  }));
}

/** Decodes an ExportTraceServiceRequest in the OTLP/JSON mapping. */
export function decodeJsonTraces(text: string): ReceivedSpan[] {
  return eachJsonItem(text, ['resourceSpans', 'scopeSpans', 'spans'], (span, origin) => ({
    name: asText(span.name),
    traceId: hexId(span.traceId, 'traceId', 32),
    spanId: hexId(span.spanId, 'spanId', 16),
    parentSpanId: hexId(span.parentSpanId, 'parentSpanId', 16),
    kind: Number(span.kind ?? 0),
    attributes: jsonAttributes(span.attributes),
    ...origin,
  }));
}

function hexId(v: unknown, what: string, digits: number): string {
  const hex = asText(v);
  if (hex !== '' && !new RegExp(`^[0-9a-f]{${digits}}$`).test(hex))
    throw new Error(`${what} must be ${digits} hex digits`);
  return hex;
}

// ---- the server -----------------------------------------------------------------------------

export class OtlpReceiver {
  readonly records: ReceivedLogRecord[] = [];
  readonly spans: ReceivedSpan[] = [];
  /** Requests refused as undecodable, with the reason sent back. */
  readonly rejected: string[] = [];
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private port = 0;
  private failStatus: number | undefined;

  static async start(): Promise<OtlpReceiver> {
    const receiver = new OtlpReceiver();
    await receiver.listen();
    return receiver;
  }

  /** The logs endpoint, as an exporter's url. */
  get url(): string {
    return `http://127.0.0.1:${this.port}/v1/logs`;
  }

  /** The traces endpoint, as an exporter's url. */
  get tracesUrl(): string {
    return `http://127.0.0.1:${this.port}/v1/traces`;
  }

  /** Answers every export with this HTTP status (e.g. 503) until called with undefined. */
  failWith(status: number | undefined): void {
    this.failStatus = status;
  }

  /** Unreachable: the port is closed and open connections are cut. */
  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Reachable again on the same port. */
  async restart(): Promise<void> {
    await this.listen();
  }

  async close(): Promise<void> {
    await this.stop();
  }

  /** Records whose attribute `key` equals `value`. */
  withAttribute(key: string, value: AttributeValue): ReceivedLogRecord[] {
    return this.records.filter((r) => r.attributes[key] === value);
  }

  /** Waits until `predicate` holds of the records so far (polling), or throws after timeoutMs. */
  async waitFor(predicate: (records: ReceivedLogRecord[]) => boolean, timeoutMs = 60_000): Promise<void> {
    await until('the OTLP records wanted', () => predicate(this.records), timeoutMs);
  }

  private async listen(): Promise<void> {
    if (this.server) return;
    const server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) res.writeHead(500).end(String(err));
      });
    });
    server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', resolve);
    });
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/v1/logs' && path !== '/v1/traces') {
      res.writeHead(404).end();
      return;
    }
    if (req.method !== 'POST') {
      res.writeHead(405, { allow: 'POST' }).end();
      return;
    }
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    if (this.failStatus !== undefined) {
      res
        .writeHead(this.failStatus, { 'content-type': 'application/json' })
        .end('{"message":"failing on purpose"}');
      return;
    }
    const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim() ?? '';
    const traces = path === '/v1/traces';
    let records: ReceivedLogRecord[] = [];
    let spans: ReceivedSpan[] = [];
    try {
      let body = Buffer.concat(chunks);
      if (req.headers['content-encoding'] === 'gzip') body = gunzipSync(body);
      if (type === 'application/json' && traces) spans = decodeJsonTraces(body.toString('utf8'));
      else if (type === 'application/json') records = decodeJsonLogs(body.toString('utf8'));
      else if (type === 'application/x-protobuf' && !traces) records = decodeProtobufLogs(body);
      else {
        const message = `unsupported content type ${type} on ${path}`;
        res.writeHead(415, { 'content-type': 'application/json' }).end(JSON.stringify({ message }));
        this.rejected.push(message);
        return;
      }
    } catch (err) {
      const message = `undecodable ${type} request: ${(err as Error).message}`;
      this.rejected.push(message);
      res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ message }));
      return;
    }
    this.records.push(...records);
    this.spans.push(...spans);
    if (type === 'application/x-protobuf') {
      // An empty ExportLogsServiceResponse: full success.
      res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
    } else {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    }
  }
}
