/**
 * The cluster's CA (issue 19): made by the first `cluster init` on its host's $DHTFS_HOME/tls (the key
 * stays there: certificates are issued on that host), its certificate and CRL published in the store for
 * the node daemons; `peer probe` signs the node's certificate request; `cert revoke` publishes the new CRL.
 */
import fs from 'node:fs';
import path from 'node:path';
import { keys, type PeerRecord, type PlacedBrick, type VolumeRecord } from '../cluster/records.js';
import { update, type Store } from '../cluster/store.js';
import type { SpecTls, VolumeOptions } from '../dht/spec.js';
import { clientTlsFiles, defaultClientTlsDir, keepNewerCrl, tlsFilesIn, type TlsFiles } from '../wire/tls.js';
import { cliTlsDir, ensureCa, issue, revoke, signCsr, tlsHome } from './cert.js';
import { announcer } from '../cluster/brick-runner.js';
import { home } from './state.js';

function caHere(): string | null {
  const f = path.join(tlsHome(), 'ca.pem');
  return fs.existsSync(f) && fs.existsSync(path.join(tlsHome(), 'private', 'ca-key.pem')) ? fs.readFileSync(f, 'utf8') : null;
}

/** At `cluster init`: the CA made here and published when the cluster has none. Says what it did. */
export async function initClusterCa(s: Store): Promise<string> {
  const there = await s.get(keys.pkiCa);
  if (!there) {
    const made = ensureCa();
    const ca = fs.readFileSync(path.join(tlsHome(), 'ca.pem'), 'utf8');
    const crl = fs.readFileSync(path.join(tlsHome(), 'crl.pem'), 'utf8');
    if (
      !(await s.commit([
        { key: keys.pkiCa, value: ca, ifRev: 0 },
        { key: keys.pkiCrl, value: crl },
      ]))
    )
      return initClusterCa(s);
    return `the cluster's CA: ${made ? 'made' : "this host's"} in ${tlsHome()} (certificates are issued on this host)`;
  }
  if (caHere() === there.value) return `the cluster's CA is this host's (${tlsHome()})`;
  return "the cluster's CA is on another host (the one that ran cluster init first): peer probe and cert issue/revoke run there";
}

/**
 * At `peer probe`: signs the node's certificate request when there is one (the node asked, and has no
 * certificate yet), naming its address and the name it was probed by. Null when there was nothing to
 * sign; a message when it could not be signed here.
 */
export async function issueNodeCert(s: Store, p: PeerRecord, probedAs: string, waitMs = 5000): Promise<string | null> {
  const deadline = Date.now() + waitMs;
  let req = await s.get(keys.nodeCsr(p.id));
  // A daemon that just started puts its request in right after its presence.
  while (!req && !(await s.get(keys.nodeCert(p.id))) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    req = await s.get(keys.nodeCsr(p.id));
  }
  if (!req) return null;
  const ca = await s.get(keys.pkiCa);
  if (!ca || caHere() !== ca.value) return `node ${p.id} has no certificate yet: run this peer probe on the host holding the cluster's CA (the first to run cluster init)`;
  const { csr } = JSON.parse(req.value) as { csr: string };
  const cert = signCsr('node', p.id, csr, [p.address, probedAs]);
  await s.commit([
    { key: keys.nodeCert(p.id), value: cert },
    { key: keys.nodeCsr(p.id), value: null, ifRev: req.rev },
  ]);
  return null;
}

/**
 * At `peer detach`: the node's certificate revoked (the CRL published) and withdrawn from the store, so
 * that a host out of the pool serves no specs and gets none; a later probe issues a new one (the node
 * asks again). A message when it cannot be done here (the CA is on another host).
 */
export async function revokeNodeCert(s: Store, p: PeerRecord): Promise<string | null> {
  const cert = await s.get(keys.nodeCert(p.id));
  if (!cert) return null;
  const ca = await s.get(keys.pkiCa);
  if (!ca || caHere() !== ca.value) return `node ${p.id} keeps its certificate: run peer detach on the host holding the cluster's CA to revoke it`;
  try {
    revoke(p.id, 'node');
  } catch (e) {
    if (!/no valid node certificate/.test((e as Error).message)) throw e;
  }
  await publishCrl(s);
  await s.commit([{ key: keys.nodeCert(p.id), value: null }]);
  return null;
}

/** After `cert revoke` on a cluster's CA host: the new CRL to every node daemon (they reload it before their next connection). */
export async function publishCrl(s: Store): Promise<void> {
  await s.commit([{ key: keys.pkiCrl, value: fs.readFileSync(path.join(tlsHome(), 'crl.pem'), 'utf8') }]);
}

/**
 * This host's client certificate for the bricks of cluster volumes with transport.tls on (the CLI's
 * probes, topology pushes, file commands, rebalance runs): the CLI's own (issued here on the CA's host),
 * else the client certificate in $DHTFS_HOME/tls/client; null when there is none. With the cluster CA's
 * CRL from the store (kept in $DHTFS_HOME/tls/pool-crl.pem): a brick of a detached node is refused.
 */
export async function cliTlsFiles(s: Store): Promise<TlsFiles | null> {
  const f = await cliCertFiles(s);
  const crl = await s.get(keys.pkiCrl);
  if (!f || !crl) return f;
  const file = path.join(home(), 'tls', 'pool-crl.pem');
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const r = keepNewerCrl(file, crl.value, fs.readFileSync(f.ca));
  if (r.refused) process.stderr.write(`dhtfs: the cluster's CRL in the store (${keys.pkiCrl}) is refused: ${r.refused}; ${file} (if any) stays\n`);
  return { ...f, crl: file };
}

async function cliCertFiles(s: Store): Promise<TlsFiles | null> {
  const dir = cliTlsDir();
  if (fs.existsSync(path.join(dir, 'cert.pem'))) return tlsFilesIn(dir);
  const ca = await s.get(keys.pkiCa);
  if (ca && caHere() === ca.value) return issue('client', 'cli', dir);
  const c = clientTlsFiles(defaultClientTlsDir());
  if ('files' in c) return c.files;
  // A node daemon running a task it took over: its node's certificate (it has clientAuth too).
  const node = clientTlsFiles(path.join(home(), 'node', 'tls'));
  return 'files' in node ? node.files : null;
}

/** Tells a volume's bricks its topology (and `leaving`); over TLS with this host's client certificate when the volume has it on. */
export function announceWith(s: Store): (v: VolumeRecord, leaving?: PlacedBrick[]) => Promise<void> {
  return announcer(() => cliTlsFiles(s));
}

/** A spec of a cluster volume with this host's client certificate in it when the volume has TLS on. */
export async function withCliTls<T extends { options?: VolumeOptions }>(s: Store, spec: T): Promise<T & { tls?: SpecTls }> {
  if (!spec.options?.tls) return spec;
  const f = await cliTlsFiles(s);
  return f ? { ...spec, tls: { ca: f.ca, cert: f.cert, key: f.key, ...(f.crl ? { crl: f.crl } : {}) } } : spec;
}

/**
 * volume set NAME transport.tls on|off in a cluster: the record's option only (the bricks take it up at
 * their next start, from their node's certificate): no topology is pushed now, the bricks still speak the
 * old transport.
 */
export async function clusterSetTls(s: Store, name: string, on: boolean): Promise<VolumeRecord> {
  const v = await update<VolumeRecord>(s, keys.volume(name), (cur) => {
    if (!cur) throw new Error(`volume ${name} does not exist`);
    const options = { ...cur.options };
    if (on) options.tls = true;
    else delete options.tls;
    return !!cur.options?.tls === on ? null : { ...cur, options };
  });
  return v!;
}

/**
 * volume set NAME auth.ssl-allow CN,CN... (or '*'; reset: absent) in a cluster: which client certificates
 * the node daemons give the volume's spec to (taken up by the next request), and, on a TLS volume, which
 * ones its bricks serve: a started volume's topology goes one version up and is told to its bricks.
 */
export async function clusterSetSslAllow(s: Store, name: string, value: string | null): Promise<string[] | null> {
  const names =
    value === null
      ? null
      : value
          .split(',')
          .map((x) => x.trim())
          .filter(Boolean);
  if (names && (names.length === 0 || names.some((n) => n !== '*' && !/^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$/.test(n)))) throw new Error(`auth.ssl-allow: certificate names (as cert issue client NAME made them), comma-separated, or '*'`);
  const v = await update<VolumeRecord>(s, keys.volume(name), (cur) => {
    if (!cur) throw new Error(`volume ${name} does not exist`);
    const { sslAllow: _, ...rest } = cur;
    const version = cur.state === 'started' ? cur.version + 1 : cur.version;
    return names && !names.includes('*') ? { ...rest, sslAllow: names, version } : { ...rest, version };
  });
  if (v!.state === 'started') await announceWith(s)(v!);
  return names;
}
