/**
 * A node daemon's certificate (issue 19; edge code: files, openssl): its private key is made on its host
 * and never leaves it; the daemon puts a certificate request in the cluster's store (pki/csr/ID), the
 * `peer probe` of a host that holds the cluster's CA signs it (pki/cert/ID), and the daemon keeps its
 * certificate, the CA's and the CA's CRL (pki/ca, pki/crl, rewritten on every revocation) in its state
 * folder's tls/, as wire/tls.ts reads them: its management server and its bricks present it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { keys, type PeerRecord } from '../cluster/records.js';
import { update, type Store } from '../cluster/store.js';
import { MgmtServer } from '../cluster/mgmt-server.js';
import { checkCrl, tlsNetwork } from '../wire/tls.js';
import { LimitLog, addressOf } from '../wire/limits.js';
import { realClock } from '../common/real-env.js';

/** Sockets the management server holds at once, TLS handshakes included; more are closed as they come. */
const MGMT_MAX_SOCKETS = 256;
import type { NodeLog } from '../cluster/node.js';
import type { TlsFiles } from '../wire/tls.js';
import { makeCsr, makeKey } from './cert.js';

export class NodePki {
  readonly dir: string;
  private stopWatch: (() => Promise<void>) | null = null;
  private listeners: { ready: () => void; unready: () => void }[] = [];
  private address = '';

  constructor(
    private readonly store: Store,
    private readonly id: string,
    stateDir: string,
    private readonly log: NodeLog,
  ) {
    this.dir = path.join(stateDir, 'tls');
  }

  /** The files wire/tls.ts takes (crl.pem whether or not it is there yet: it is read when it appears). */
  files(): TlsFiles {
    return { ca: path.join(this.dir, 'ca.pem'), cert: path.join(this.dir, 'cert.pem'), key: path.join(this.dir, 'key.pem'), crl: path.join(this.dir, 'crl.pem') };
  }

  /** Whether the node holds a certificate of the CA for its key. */
  ready(): boolean {
    const f = this.files();
    if (!fs.existsSync(f.ca) || !fs.existsSync(f.cert)) return false;
    return this.matches(fs.readFileSync(f.cert, 'utf8'));
  }

  private matches(certPem: string): boolean {
    try {
      return new X509Certificate(certPem).checkPrivateKey(createPrivateKey(fs.readFileSync(this.files().key)));
    } catch {
      return false;
    }
  }

  /**
   * Calls `ready` whenever the node comes to hold a certificate (at once if it holds one), `unready`
   * whenever it loses it (withdrawn from the store: `peer detach` revoked it).
   */
  on(ready: () => void, unready: () => void): void {
    this.listeners.push({ ready, unready });
    if (this.ready()) ready();
  }

  /** Makes the key if missing, asks for a certificate if it has none, and follows the CA's files in the store. */
  async start(address: string): Promise<void> {
    this.address = address;
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const f = this.files();
    if (!fs.existsSync(f.key)) makeKey(f.key);
    this.stopWatch = await this.store.watch(keys.pki, (e) => {
      if (e.entry) this.take(e.key, e.entry.value);
      else if (e.key === keys.nodeCert(this.id)) void this.drop().catch((err) => this.log('warn', `tls: ${(err as Error).message}`));
    });
    const all = await this.store.list(keys.pki);
    for (const e of all) this.take(e.key, e.value);
    // A certificate kept here that the store no longer has was withdrawn while this daemon was down.
    if (this.ready() && !all.some((e) => e.key === keys.nodeCert(this.id))) await this.drop();
    else if (!this.ready()) await this.request();
  }

  private async request(): Promise<void> {
    await this.store.commit([{ key: keys.nodeCsr(this.id), value: JSON.stringify({ csr: makeCsr(this.files().key, 'node', this.id), address: this.address }) }]);
    this.log('info', `tls: certificate requested (${keys.nodeCsr(this.id)}); "dhtfs peer probe ${this.address}" on the host holding the cluster's CA issues it`);
  }

  /** The node's certificate withdrawn (revoked by peer detach): dropped here, and a new one asked for (a probe issues it). */
  private async drop(): Promise<void> {
    if (!fs.existsSync(this.files().cert)) return;
    fs.rmSync(this.files().cert, { force: true });
    this.log('warn', `tls: this node's certificate was withdrawn (peer detach revoked it): the management server stops until a peer probe issues a new one`);
    for (const l of this.listeners) l.unready();
    await this.request();
  }

  private write(file: string, pem: string): void {
    const tmp = `${file}.tmp`;
    fs.writeFileSync(tmp, pem, { mode: 0o600 });
    fs.renameSync(tmp, file);
  }

  private take(key: string, value: string): void {
    const f = this.files();
    const was = this.ready();
    if (key === keys.pkiCa) this.write(f.ca, value);
    else if (key === keys.pkiCrl) {
      // Used by the management server and the bricks only when the CA signed it (a forged one would refuse every peer).
      const c = fs.existsSync(f.ca) ? checkCrl(value, fs.readFileSync(f.ca)) : ({ ok: false, reason: "the CA's certificate is not here yet" } as const);
      if (!c.ok) return this.log('warn', `tls: ${key} is refused: ${c.reason}; the CRL here (if any) stays`);
      this.write(f.crl!, c.pem);
    } else if (key === keys.nodeCert(this.id)) {
      if (!this.matches(value)) return this.log('warn', `tls: ${key} is not a certificate for this node's key (its key was made again?): ignored`);
      this.write(f.cert, value);
    } else return;
    if (!was && this.ready()) {
      this.log('info', `tls: this node's certificate is here (${f.cert})`);
      for (const l of this.listeners) l.ready();
    }
  }

  async close(): Promise<void> {
    await this.stopWatch?.();
  }
}

/**
 * The node daemon's management path: its certificate (above), then, once it has one, the management
 * server on `address:port` over TLS (clients without a certificate of the cluster's CA, or with a revoked
 * one, are refused and logged: "mgmt: client ... refused: REASON"), its port in the node's peer record.
 */
export async function startManagement(store: Store, id: string, stateDir: string, address: string, port: number, log: NodeLog): Promise<{ close(): Promise<void>; tlsDir: string; tls(): TlsFiles | null }> {
  const pki = new NodePki(store, id, stateDir, log);
  let server: MgmtServer | null = null;
  let closed = false;
  await pki.start(address);
  pki.on(
    () => {
      if (closed || server) return;
      // One refusal line per reason and address per 10 s (the rest counted): a flood cannot fill the log.
      const refusals = new LimitLog(realClock, (msg) => log('warn', msg));
      const network = tlsNetwork({
        files: pki.files(),
        caName: "the cluster's CA",
        maxSockets: MGMT_MAX_SOCKETS,
        log: (msg, extra) => log('info', `mgmt: ${msg} ${JSON.stringify(extra)}`),
        refused: (remote, reason, extra) => refusals.line(`${reason}:${addressOf(remote)}`, `mgmt: client ${remote} refused: ${reason}${extra.subject ? ` (certificate ${extra.subject})` : ''}`),
      });
      const s = new MgmtServer(store, network, realClock, log);
      server = s;
      s.listen(address, port).then(
        async (bound) => {
          log('info', `mgmt: serving volume specs on ${address}:${bound} (TLS, clients of the cluster's CA)`);
          await update<PeerRecord>(store, keys.peer(id), (cur) => (cur && cur.mgmtPort !== bound ? { ...cur, mgmtPort: bound } : null)).catch((e) => log('warn', `mgmt: port not recorded: ${(e as Error).message}`));
        },
        (e) => {
          if (server === s) server = null;
          log('error', `mgmt: cannot listen on ${address}:${port}: ${(e as Error).message}; volume specs are not served by this node`);
        },
      );
    },
    () => {
      const s = server;
      server = null;
      void s?.close().then(() => log('info', 'mgmt: stopped serving volume specs (this node has no certificate)'));
    },
  );
  return {
    tlsDir: pki.dir,
    tls: () => (pki.ready() ? pki.files() : null),
    close: async () => {
      closed = true;
      await pki.close();
      await server?.close();
    },
  };
}
