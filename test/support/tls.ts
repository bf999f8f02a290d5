import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

// Certificates made by openssl for a test: a CA of its own and a server certificate it signed for
// 127.0.0.1 and localhost, so that clients check a real chain (no rejectUnauthorized: false).

const run = promisify(execFile);

export interface TestCertificates {
  /** The CA's certificate (PEM): what a client trusts. */
  caFile: string;
  /** The server's certificate (PEM), signed by the CA. */
  certFile: string;
  /** The server's private key (PEM, unencrypted PKCS#8). */
  keyFile: string;
  /** The key and the certificate in one PEM file, as Kafka's PEM key store reads them. */
  keyAndCertFile: string;
  /** The CA's private key, for the client certificates of makeClientCertificate. */
  caKeyFile: string;
}

async function openssl(dir: string, args: string[]): Promise<void> {
  await run('openssl', args, { cwd: dir, timeout: 60_000 });
}

/** A CA and a server certificate (127.0.0.1, localhost) in `dir`, valid for two days. */
export async function makeCertificates(dir: string, prefix = 'test'): Promise<TestCertificates> {
  const f = (name: string) => join(dir, `${prefix}-${name}`);
  await openssl(dir, [
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '2',
    '-subj',
    `/CN=podmortem ${prefix} CA`,
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
    '-keyout',
    f('ca.key'),
    '-out',
    f('ca.crt'),
  ]);
  await openssl(dir, [
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-subj',
    '/CN=localhost',
    '-keyout',
    f('server.key'),
    '-out',
    f('server.csr'),
  ]);
  writeFileSync(
    f('server.ext'),
    [
      'basicConstraints=CA:FALSE',
      'keyUsage=critical,digitalSignature,keyEncipherment',
      'extendedKeyUsage=serverAuth',
      'subjectAltName=IP:127.0.0.1,DNS:localhost',
      '',
    ].join('\n'),
  );
  await openssl(dir, [
    'x509',
    '-req',
    '-in',
    f('server.csr'),
    '-CA',
    f('ca.crt'),
    '-CAkey',
    f('ca.key'),
    '-CAcreateserial',
    '-days',
    '2',
    '-extfile',
    f('server.ext'),
    '-out',
    f('server.crt'),
  ]);
  writeFileSync(
    f('server.pem'),
    readFileSync(f('server.key'), 'utf8') + readFileSync(f('server.crt'), 'utf8'),
  );
  return {
    caFile: f('ca.crt'),
    certFile: f('server.crt'),
    keyFile: f('server.key'),
    keyAndCertFile: f('server.pem'),
    caKeyFile: f('ca.key'),
  };
}

/** A client certificate (mutual TLS) for `name`, signed by the CA of `certs`. */
export async function makeClientCertificate(
  dir: string,
  certs: TestCertificates,
  name: string,
): Promise<{ certFile: string; keyFile: string }> {
  const f = (file: string) => join(dir, `client-${name}-${file}`);
  await openssl(dir, [
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-subj',
    `/CN=${name}`,
    '-keyout',
    f('key.pem'),
    '-out',
    f('csr.pem'),
  ]);
  writeFileSync(f('ext'), ['basicConstraints=CA:FALSE', 'extendedKeyUsage=clientAuth', ''].join('\n'));
  await openssl(dir, [
    'x509',
    '-req',
    '-in',
    f('csr.pem'),
    '-CA',
    certs.caFile,
    '-CAkey',
    certs.caKeyFile,
    '-CAcreateserial',
    '-days',
    '2',
    '-extfile',
    f('ext'),
    '-out',
    f('cert.pem'),
  ]);
  return { certFile: f('cert.pem'), keyFile: f('key.pem') };
}
