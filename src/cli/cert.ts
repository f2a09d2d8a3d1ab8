/**
 * Certificates for TLS on the brick path (`dhtfs cert ...`): a CA under DHTFS_HOME/tls made when TLS is
 * first turned on (or by `cert init`), a certificate per brick of this host, one for the CLI's own
 * connections, client certificates issued into a folder a client points to, and a CRL the bricks
 * reload when it changes. The openssl command (OpenSSL 3) does the signing and the CRL: Node's crypto
 * verifies certificates but cannot make them or a CRL, and openssl's `ca` keeps the index of what was
 * issued and revoked that a CRL is made from.
 */
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import type { Command } from 'commander';
import { home, isLocalHost, type StoredVolume } from './state.js';
import { keepNewerCrl, tlsFilesIn, type TlsFiles } from '../wire/tls.js';

export function tlsHome(): string {
  return path.join(home(), 'tls');
}

/**
 * The etcd CA of this host (made by the first `cert issue etcd-server`): a CA of its own, not the
 * cluster's, so that a client certificate of the cluster's CA (a mount) is no key to etcd, which holds
 * the volumes' secrets; it signs etcd's member certificates and the etcd client certificates of the CLI
 * and the node daemons.
 */
export function etcdCaHome(): string {
  return path.join(tlsHome(), 'etcd-ca');
}

const DAYS = '3650';

export function openssl(args: string[]): string {
  try {
    return execFileSync('openssl', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as Error & { stderr?: string; code?: string };
    if (err.code === 'ENOENT') throw new Error('the openssl command is needed for certificates (apt install openssl)');
    throw new Error(`openssl ${args[0]} failed: ${(err.stderr ?? err.message).trim().split('\n').slice(-3).join(' ')}`);
  }
}

function cnf(dir: string): string {
  return `[ ca ]
default_ca = dhtfs
[ dhtfs ]
dir = ${dir}
database = $dir/index.txt
new_certs_dir = $dir/issued
certificate = $dir/ca.pem
private_key = $dir/private/ca-key.pem
serial = $dir/serial
crlnumber = $dir/crlnumber
default_md = sha256
default_days = ${DAYS}
default_crl_days = ${DAYS}
policy = any
unique_subject = no
copy_extensions = none
[ any ]
organizationName = optional
organizationalUnitName = optional
commonName = supplied
`;
}

/** The CA in folder `d` (made there when absent): true when it was made now. */
export function ensureCa(d = tlsHome()): boolean {
  if (fs.existsSync(path.join(d, 'ca.pem'))) return false;
  fs.mkdirSync(path.join(d, 'private'), { recursive: true, mode: 0o700 });
  fs.mkdirSync(path.join(d, 'issued'), { recursive: true, mode: 0o700 });
  fs.chmodSync(d, 0o700);
  fs.writeFileSync(path.join(d, 'ca.cnf'), cnf(d));
  fs.writeFileSync(path.join(d, 'index.txt'), '');
  fs.writeFileSync(path.join(d, 'serial'), '1000\n');
  fs.writeFileSync(path.join(d, 'crlnumber'), '1000\n');
  const key = path.join(d, 'private', 'ca-key.pem');
  openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key]);
  fs.chmodSync(key, 0o600);
  const tmp = path.join(d, 'ca.pem.tmp');
  openssl([
    'req',
    '-x509',
    '-new',
    '-key',
    key,
    '-sha256',
    '-days',
    DAYS,
    '-subj',
    `/O=dhtfs/CN=dhtfs ${d === etcdCaHome() ? 'etcd ' : ''}CA ${path.basename(home())} ${new Date().toISOString()}`,
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
    '-out',
    tmp,
  ]);
  makeCrl(d);
  fs.renameSync(tmp, path.join(d, 'ca.pem'));
  return true;
}

/** Writes the CRL from the CA's index (atomically: a brick reading it sees the old one or the new one). */
function makeCrl(d: string): void {
  const tmp = path.join(d, 'crl.pem.tmp');
  const caTmp = path.join(d, 'ca.pem.tmp');
  // During ensureCa the certificate is still at its temporary name.
  const args = ['ca', '-batch', '-config', path.join(d, 'ca.cnf'), '-gencrl', '-out', tmp];
  if (fs.existsSync(caTmp)) args.push('-cert', caTmp);
  openssl(args);
  fs.renameSync(tmp, path.join(d, 'crl.pem'));
}

/**
 * brick: a brick of a one-host volume; node: a node daemon of a cluster (its management server and its
 * bricks); client; etcd-server: an etcd member (its client and peer URLs); etcd-client: the CLI or a
 * node daemon reaching etcd (the last two of the etcd CA).
 */
export type CertKind = 'brick' | 'node' | 'client' | 'etcd-server' | 'etcd-client';

/** A new P-256 private key at `file` (0600). */
export function makeKey(file: string): void {
  openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', file]);
  fs.chmodSync(file, 0o600);
}

/** A certificate request for `key` (PEM), naming its kind and name. */
export function makeCsr(key: string, kind: CertKind, name: string): string {
  return openssl(['req', '-new', '-key', key, '-subj', `/O=dhtfs/OU=${kind}/CN=${name}`]);
}

function checkName(name: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$/.test(name)) throw new Error(`bad certificate name '${name}': letters, digits, '.', '_', '@', '-'`);
}

/**
 * Signs a certificate request with this host's CA (made when absent): the certificate's subject is
 * /O=dhtfs/OU=kind/CN=name whatever the request asked; a brick's or node's names its hosts (SANs), so
 * that clients check it. Resolves to the certificate (PEM).
 */
export function signCsr(kind: CertKind, name: string, csrPem: string, hosts: string[] = [], d = tlsHome()): string {
  checkName(name);
  ensureCa(d);
  const tmp = fs.mkdtempSync(path.join(d, 'sign-'));
  try {
    const csr = path.join(tmp, 'req.csr');
    const ext = path.join(tmp, 'ext.cnf');
    const out = path.join(tmp, 'cert.pem');
    fs.writeFileSync(csr, csrPem);
    const sans = [...new Set(hosts)].map((h) => (/^[\d.]+$|:/.test(h) ? `IP:${h}` : `DNS:${h}`));
    fs.writeFileSync(
      ext,
      `basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=${kind === 'client' || kind === 'etcd-client' ? 'clientAuth' : 'serverAuth,clientAuth'}\n${sans.length ? `subjectAltName=${sans.join(',')}\n` : ''}`,
    );
    openssl(['ca', '-batch', '-notext', '-config', path.join(d, 'ca.cnf'), '-extfile', ext, '-subj', `/O=dhtfs/OU=${kind}/CN=${name}`, '-in', csr, '-out', out]);
    return fs.readFileSync(out, 'utf8');
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * Issues a certificate (P-256 key) into `out`: key.pem (0600), cert.pem, ca.pem; a brick's names its
 * host (a SAN), so clients check it; crl.pem links to the CA's CRL when `withCrl`.
 */
export function issue(kind: CertKind, name: string, out: string, hosts: string[] = [], withCrl = false, d = tlsHome()): TlsFiles {
  checkName(name);
  ensureCa(d);
  fs.mkdirSync(out, { recursive: true, mode: 0o700 });
  const key = path.join(out, 'key.pem');
  makeKey(key);
  fs.writeFileSync(path.join(out, 'cert.pem'), signCsr(kind, name, makeCsr(key, kind, name), hosts, d));
  fs.copyFileSync(path.join(d, 'ca.pem'), path.join(out, 'ca.pem'));
  if (withCrl) {
    fs.rmSync(path.join(out, 'crl.pem'), { force: true });
    fs.symlinkSync(path.join(d, 'crl.pem'), path.join(out, 'crl.pem'));
  }
  return tlsFilesIn(out);
}

/** Revokes every valid certificate of the CA in `d` whose index line (serial, subject) `which` picks, and writes the CRL when any: the number revoked. */
function revokeWhere(d: string, which: (serial: string, subject: string[]) => boolean): number {
  if (!fs.existsSync(path.join(d, 'ca.pem'))) throw new Error(`no CA here (${d}): nothing was issued`);
  let n = 0;
  for (const line of fs.readFileSync(path.join(d, 'index.txt'), 'utf8').split('\n')) {
    const f = line.split('\t');
    if (f[0] !== 'V' || !f[5] || !which(f[3], f[5].split('/'))) continue;
    openssl(['ca', '-batch', '-config', path.join(d, 'ca.cnf'), '-revoke', path.join(d, 'issued', `${f[3]}.pem`)]);
    n++;
  }
  if (n > 0) makeCrl(d);
  return n;
}

/** Revokes every valid certificate issued to client `name` and writes the CRL: the number revoked. */
export function revoke(name: string, kind: CertKind = 'client', d = tlsHome()): number {
  const n = revokeWhere(d, (_serial, subject) => subject.includes(`OU=${kind}`) && subject.includes(`CN=${name}`));
  if (n === 0) throw new Error(`no valid ${kind} certificate named ${name}`);
  return n;
}

/** Revokes the certificate of serial `serial` (hex) of the CA in `d`, and writes the CRL: whether it was valid there. */
export function revokeSerial(serial: string, d: string): boolean {
  const norm = (x: string) => x.toUpperCase().replace(/^0+(?=.)/, '');
  return revokeWhere(d, (s) => norm(s) === norm(serial)) > 0;
}

/** A brick's folder of TLS files on this host. */
export function brickTlsDir(volume: string, brick: string): string {
  return path.join(tlsHome(), 'bricks', volume, brick);
}

/** The CLI's own client certificate on this host (its probes, topology pushes, rebalances, mounts). */
export function cliTlsDir(): string {
  return path.join(tlsHome(), 'clients', 'cli');
}

/** The brick's certificate (issued when missing). */
export function ensureBrickCert(v: StoredVolume, b: { name: string; host: string }): TlsFiles {
  const dir = brickTlsDir(v.name, b.name);
  if (fs.existsSync(path.join(dir, 'cert.pem'))) return tlsFilesIn(dir);
  return issue('brick', b.name, dir, [b.host, ...(isLocalHost(b.host) ? ['127.0.0.1', 'localhost'] : [])], true);
}

/** Turns TLS on or off for a volume kept here: CA, brick and CLI certificates, the spec's client files. */
export function setVolumeTls(v: StoredVolume, on: boolean): void {
  v.options = { ...v.options };
  if (!on) {
    delete v.options.tls;
    delete v.tls;
    return;
  }
  v.options.tls = true;
  for (const b of v.bricks) if (isLocalHost(b.host)) ensureBrickCert(v, b);
  const cli = cliTlsDir();
  v.tls = fs.existsSync(path.join(cli, 'cert.pem')) ? tlsFilesIn(cli) : issue('client', 'cli', cli);
}

export function registerCertCommands(program: Command, action: (f: (...a: any[]) => void | Promise<void>) => (...a: any[]) => void): void {
  const cert = program
    .command('cert')
    .description("certificates for TLS on the brick path (volume set NAME transport.tls on) and, in a cluster, the management path (mount HOST:/NAME); in a cluster, run on the host holding the cluster's CA (the first to run cluster init)");
  cert
    .command('init')
    .description(`make this host's CA (${'$DHTFS_HOME'}/tls; made by itself when TLS is first turned on)`)
    .action(
      action(() => {
        const made = ensureCa();
        console.log(made ? `cert init: CA made in ${tlsHome()}` : `cert init: the CA in ${tlsHome()} is there already`);
      }),
    );
  cert
    .command('issue <kind> <name>')
    .description(
      "issue a certificate into -o DIR (key.pem 0600, cert.pem, ca.pem). kind client: for a spec's tls or --tls-dir (a client that mounts HOST:/NAME keeps them in $DHTFS_HOME/tls/client), with the CA's crl.pem (kept current by the client from the node daemons). " +
        "kind etcd-server: an etcd member's (--hosts names its addresses; for --cert-file, --key-file, --trusted-ca-file and their --peer- twins). kind etcd-client: the CLI's and node daemon's key to etcd (--etcd-tls DIR, or $DHTFS_HOME/tls/etcd-client). " +
        `The etcd ones come from the etcd CA (${'$DHTFS_HOME'}/tls/etcd-ca, made by the first of them), not from the cluster's CA: a client's certificate is no key to etcd`,
    )
    .requiredOption('-o, --output <dir>', 'folder to write key.pem (0600), cert.pem and ca.pem to')
    .option('--hosts <list>', "etcd-server: the member's addresses and names, comma-separated (its subjectAltNames)")
    .action(
      action((kind: string, name: string, o: { output: string; hosts?: string }) => {
        const out = path.resolve(o.output);
        if (kind === 'client') {
          issue('client', name, out);
          // The CA's CRL as it is now (a copy: the folder goes to another host); a client by host keeps it current.
          if (fs.existsSync(path.join(tlsHome(), 'crl.pem'))) keepNewerCrl(path.join(out, 'crl.pem'), fs.readFileSync(path.join(tlsHome(), 'crl.pem'), 'utf8'), fs.readFileSync(path.join(tlsHome(), 'ca.pem')));
        } else if (kind === 'etcd-server') {
          const hosts = (o.hosts ?? '')
            .split(',')
            .map((h) => h.trim())
            .filter(Boolean);
          if (!hosts.length) throw new Error('etcd-server: --hosts ADDRESS[,NAME...] (the addresses its clients and peers reach it by)');
          issue('etcd-server', name, out, hosts, false, etcdCaHome());
        } else if (kind === 'etcd-client') issue('etcd-client', name, out, [], false, etcdCaHome());
        else throw new Error(`kind is client, etcd-server or etcd-client (brick and node certificates are issued by volume TLS and peer probe)`);
        console.log(`cert issue: ${kind} ${name}: ${out}/{key,cert,ca}.pem`);
      }),
    );
  cert
    .command('revoke <name>')
    .description(
      "revoke a client's certificate(s): added to the CRL, which bricks (and a cluster's node daemons) reload before their next connection; --etcd: an etcd client's, in the etcd CA's CRL, published in a cluster's store for node daemons with --etcd-crl-file (else copy it to each etcd member's --client-crl-file)",
    )
    .option('--etcd', 'an etcd-client certificate (of the etcd CA)')
    .action(
      action(async (name: string, o: { etcd?: boolean }) => {
        if (o.etcd) {
          const n = revoke(name, 'etcd-client', etcdCaHome());
          const { clusterConfig, withStore } = await import('./cluster.js');
          const published = !!clusterConfig();
          if (published) await withStore(async (s) => (await import('./etcd-pki.js')).publishEtcdCrl(s));
          console.log(
            `cert revoke: etcd-client ${name}: ${n} certificate${n === 1 ? '' : 's'} revoked; CRL ${path.join(etcdCaHome(), 'crl.pem')}` +
              (published ? ' published (pki/etcd-crl): node daemons with --etcd-crl-file write it for etcd' : `: copy it to each etcd member's --client-crl-file`) +
              ' (etcd reads it at each new connection)',
          );
          return;
        }
        const n = revoke(name);
        const { clusterConfig, withStore } = await import('./cluster.js');
        if (clusterConfig()) await withStore(async (s) => (await import('./cluster-pki.js')).publishCrl(s));
        console.log(`cert revoke: client ${name}: ${n} certificate${n === 1 ? '' : 's'} revoked; CRL ${path.join(tlsHome(), 'crl.pem')}`);
      }),
    );
}
