import t from 'tap';
import { askedOfHandler, parseHandlerArgs, UNLIMITED } from './args.ts';

const good = [
  '4242',
  '7',
  '4250',
  '9',
  '11',
  '1700000000',
  '18446744073709551615',
  'my app',
  '!usr!bin!my app',
  'web-0',
  '1000',
  '2000',
];

t.test('the kernel arguments become the kernel facts', async (t) => {
  const a = parseHandlerArgs(['--config', '/etc/x.json', ...good]);
  t.equal(a.configPath, '/etc/x.json');
  t.same(a.errors, []);
  t.same(a.kernel, {
    pid: 4242,
    nsPid: 7,
    tid: 4250,
    nsTid: 9,
    signal: 11,
    time: 1700000000,
    coreLimit: UNLIMITED,
    comm: 'my app',
    exePath: '/usr/bin/my app',
    hostname: 'web-0',
    uid: 1000,
    gid: 2000,
  });
  t.equal(parseHandlerArgs([...good.slice(0, 6), '0', ...good.slice(7)]).kernel.coreLimit, 0);
});

t.test('missing arguments are named and hold 0 or empty', async (t) => {
  const none = parseHandlerArgs([]);
  t.equal(none.errors.length, 12);
  t.match(none.errors[0], /%P \(pid\) is missing/);
  t.equal(none.kernel.pid, 0);
  t.equal(none.kernel.comm, '');
  t.equal(parseHandlerArgs(['--config']).errors[0], '--config has no file');
});

t.test('malformed arguments are named, the good ones kept', async (t) => {
  const a = parseHandlerArgs(['abc', '0', '-5', '99999999999', 'SIGSEGV', ...good.slice(5), 'extra']);
  t.match(a.errors, [
    /%P \(pid\) is not a number: "abc"/,
    /%p \(nsPid\) is out of range: 0/,
    /%I \(tid\) is not a number: "-5"/,
    /%i \(nsTid\) is out of range: 99999999999/,
    /%s \(signal\) is not a number: "SIGSEGV"/,
    /1 unexpected extra argument/,
  ]);
  t.equal(a.kernel.pid, 0);
  t.equal(a.kernel.comm, 'my app');
  t.equal(a.kernel.gid, 2000);
});

t.test('--help and --version alone are a person asking, never a crash', async (t) => {
  t.equal(askedOfHandler(['--help']), 'help');
  t.equal(askedOfHandler(['-h']), 'help');
  t.equal(askedOfHandler(['--config', '/etc/x.json', '--help']), 'help', 'through the wrapper');
  t.equal(askedOfHandler(['--config', '/etc/x.json', '--version']), 'version');
  t.equal(askedOfHandler(['--config', '/etc/x.json', ...good]), undefined, "the kernel's call");
  t.equal(askedOfHandler(['--help', ...good.slice(1)]), undefined, 'a crash whose first field is odd');
  t.equal(askedOfHandler([]), undefined);
  t.equal(askedOfHandler(['--config', '--help']), undefined, '--help as the config file');
});
