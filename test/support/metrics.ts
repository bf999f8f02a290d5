// The one reader of Prometheus' text exposition format (version 0.0.4) in the tests: every
// sample with its labels, label values unescaped, so that a test asks for a series by exact
// labels and never by a substring of the line.

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const NAME = /[a-zA-Z_:][a-zA-Z0-9_:]*/y;
const LABEL_NAME = /[a-zA-Z_][a-zA-Z0-9_]*/y;
const UNESCAPED: Record<string, string> = { '\\': '\\', '"': '"', n: '\n' };

/** Every sample in `text`; throws on a line that is not a comment, blank or a sample. */
export function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    try {
      samples.push(parseSample(line));
    } catch (err) {
      throw new Error(
        `metrics line ${i + 1} ${JSON.stringify(raw)}: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
  }
  return samples;
}

/** The sum of the samples of `name` that carry every label of `labels` with exactly that value; 0 when none. */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  const wanted = Object.entries(labels);
  return parseMetrics(text)
    .filter((s) => s.name === name && wanted.every(([k, v]) => s.labels[k] === v))
    .reduce((sum, s) => sum + s.value, 0);
}

function parseSample(line: string): Sample {
  const cursor = { line, at: 0 };
  const name = token(cursor, NAME, 'a metric name');
  skipBlanks(cursor);
  const labels = line[cursor.at] === '{' ? parseLabels(cursor) : {};
  const [value, timestamp, ...rest] = line
    .slice(cursor.at)
    .trim()
    .split(/[ \t]+/);
  if (value === undefined || value === '' || rest.length > 0)
    throw new Error('expected a value and at most a timestamp');
  if (timestamp !== undefined && !/^-?\d+$/.test(timestamp)) throw new Error(`bad timestamp ${timestamp}`);
  return { name, labels, value: parseValue(value) };
}

interface Cursor {
  line: string;
  at: number;
}

function token(c: Cursor, pattern: RegExp, what: string): string {
  pattern.lastIndex = c.at;
  const m = pattern.exec(c.line);
  if (!m) throw new Error(`expected ${what} at column ${c.at + 1}`);
  c.at = pattern.lastIndex;
  return m[0];
}

function consume(c: Cursor, char: string): void {
  skipBlanks(c);
  if (c.line[c.at] !== char) throw new Error(`expected ${char} at column ${c.at + 1}`);
  c.at++;
}

function skipBlanks(c: Cursor): void {
  while (c.line[c.at] === ' ' || c.line[c.at] === '\t') c.at++;
}

function parseLabels(c: Cursor): Record<string, string> {
  const labels: Record<string, string> = {};
  consume(c, '{');
  for (;;) {
    skipBlanks(c);
    if (c.line[c.at] === '}') break;
    const key = token(c, LABEL_NAME, 'a label name');
    if (key in labels) throw new Error(`label ${key} twice`);
    consume(c, '=');
    skipBlanks(c);
    labels[key] = labelValue(c);
    skipBlanks(c);
    if (c.line[c.at] === ',') c.at++;
    else if (c.line[c.at] !== '}') throw new Error(`expected , or } at column ${c.at + 1}`);
  }
  c.at++;
  return labels;
}

function labelValue(c: Cursor): string {
  consume(c, '"');
  let value = '';
  for (;;) {
    const char = c.line[c.at++];
    if (char === undefined) throw new Error('unterminated label value');
    if (char === '"') return value;
    if (char !== '\\') {
      value += char;
      continue;
    }
    const escaped = UNESCAPED[c.line[c.at++] ?? ''];
    if (escaped === undefined) throw new Error(`bad escape at column ${c.at}`);
    value += escaped;
  }
}

// As Prometheus reads a value (Go's strconv.ParseFloat): NaN and Inf in any case and with a sign,
// for prom-client writes NaN as "Nan".
function parseValue(text: string): number {
  const special = /^([+-]?)(inf|infinity|nan)$/i.exec(text);
  if (special) {
    if (special[2]?.toLowerCase() === 'nan') return NaN;
    return special[1] === '-' ? -Infinity : Infinity;
  }
  const value = Number(text);
  if (Number.isNaN(value)) throw new Error(`bad value ${text}`);
  return value;
}
