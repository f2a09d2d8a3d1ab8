/**
 * The etcd client certificates of the pool's hosts (issue 19; edge code: files, openssl): each node daemon
 * reports the one it reaches etcd with (issuer, serial, name) in its peer record; `peer detach`, on the
 * host holding the etcd CA, revokes the detached host's and publishes the etcd CA's CRL in the store
 * (pki/etcd-crl); a node daemon given `--etcd-crl-file PATH` (on an etcd member's host) keeps that file,
 * which etcd's --client-crl-file reads at each new connection, current. etcd checks it at TLS handshakes
 * only: a connection the detached host already has open stays until it ends (docs/SECURITY.md "etcd").
 */
import fs from 'node:fs';
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import { keys, type EtcdCertId, type PeerRecord } from '../cluster/records.js';
import { update, type Store } from '../cluster/store.js';
import type { EtcdTls } from '../cluster/etcd-store.js';
import { keepNewerCrl } from '../wire/tls.js';
import { etcdCaHome, revokeSerial } from './cert.js';

/** Who a certificate (PEM) is, as a peer record keeps it. */
export function etcdCertId(certPem: string | Buffer): EtcdCertId {
  const c = new X509Certificate(certPem);
  return { issuer: c.issuer, serial: c.serialNumber, name: /(?:^|\n)CN=([^\n]*)/.exec(c.subject)?.[1] ?? '' };
}

const same = (a: EtcdCertId, b: EtcdCertId) => a.issuer === b.issuer && a.serial.replace(/^0+/, '').toUpperCase() === b.serial.replace(/^0+/, '').toUpperCase();

/** At a node daemon's start: the etcd client certificate it uses, in its peer record (nothing on a plaintext etcd). */
export async function reportEtcdCert(s: Store, id: string, tls: EtcdTls | undefined): Promise<void> {
  if (!tls?.cert) return;
  const mine = etcdCertId(tls.cert);
  await update<PeerRecord>(s, keys.peer(id), (cur) => (cur && !(cur.etcdCert && same(cur.etcdCert, mine) && cur.etcdCert.name === mine.name) ? { ...cur, etcdCert: mine } : null));
}

/**
 * At `peer detach`: the detached host's etcd client certificate revoked in the etcd CA of this host
 * (`d`) and the etcd CA's CRL published (pki/etcd-crl), so that node daemons given --etcd-crl-file put it
 * where etcd reads it. Not revoked, with a message saying why and what to do, when its node daemon never
 * reported one, when another host of the pool (or this CLI, `own`) uses the same certificate (revoking it
 * would shut them out too), or when the etcd CA is not on this host.
 */
export async function revokeEtcdCert(s: Store, p: PeerRecord, own?: EtcdTls, d = etcdCaHome()): Promise<string | null> {
  const c = p.etcdCert;
  if (!c) return `node ${p.id} reported no etcd client certificate (a plaintext etcd, or its daemon never ran): revoke its host's with "dhtfs cert revoke --etcd NAME" on the host holding the etcd CA`;
  const sharedWith = (await s.list(keys.peers)).map((e) => JSON.parse(e.value) as PeerRecord).filter((o) => o.id !== p.id && o.etcdCert && same(o.etcdCert, c));
  if (own?.cert && same(etcdCertId(own.cert), c)) sharedWith.push({ id: 'this CLI', address: '', mgmtPort: 0 });
  if (sharedWith.length)
    return `node ${p.id} keeps its etcd client certificate ${c.name} (serial ${c.serial}): ${sharedWith.map((o) => o.id).join(', ')} use${sharedWith.length === 1 ? 's' : ''} it too, and would lose etcd with it; give each host its own (cert issue etcd-client NAME), then cert revoke --etcd ${c.name}`;
  const caFile = path.join(d, 'ca.pem');
  if (!fs.existsSync(caFile) || !fs.existsSync(path.join(d, 'private', 'ca-key.pem')) || new X509Certificate(fs.readFileSync(caFile)).subject !== c.issuer)
    return `node ${p.id} keeps its etcd client certificate ${c.name} (serial ${c.serial}): the etcd CA is not on this host; run peer detach there (or "dhtfs cert revoke --etcd ${c.name}")`;
  revokeSerial(c.serial, d);
  await publishEtcdCrl(s, d);
  return null;
}

/** The etcd CA's CRL (of this host's etcd CA, `d`) to the store, for the node daemons that keep etcd's --client-crl-file. */
export async function publishEtcdCrl(s: Store, d = etcdCaHome()): Promise<void> {
  await s.commit([{ key: keys.pkiEtcdCrl, value: fs.readFileSync(path.join(d, 'crl.pem'), 'utf8') }]);
}

/**
 * `node serve --etcd-crl-file PATH`: the etcd CA's CRL from the store written to `file` whenever a newer
 * one is published (and at once), after its signature is verified against the etcd CA (`caPem`, from the
 * daemon's etcd client folder); the watch's stop.
 */
export async function followEtcdCrl(s: Store, file: string, caPem: Buffer, log: (level: 'info' | 'warn', msg: string) => void): Promise<() => Promise<void>> {
  const take = (pem: string) => {
    try {
      const r = keepNewerCrl(file, pem, caPem);
      if (r.refused) log('warn', `etcd CRL: ${keys.pkiEtcdCrl} is refused (${r.refused}); ${file} stays`);
      else if (r.kept) log('info', `etcd CRL: ${file} written (etcd reads it at each new client connection)`);
    } catch (e) {
      log('warn', `etcd CRL: ${file} not written: ${(e as Error).message}`);
    }
  };
  const stop = await s.watch(keys.pkiEtcdCrl, (e) => {
    if (e.key === keys.pkiEtcdCrl && e.entry) take(e.entry.value);
  });
  const now = await s.get(keys.pkiEtcdCrl);
  if (now) take(now.value);
  return stop;
}
