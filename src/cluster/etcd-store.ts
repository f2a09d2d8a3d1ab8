/**
 * The cluster's state in etcd (Debian's etcd-server; the etcd3 client, which speaks etcd's gRPC API, keeps
 * leases alive and re-establishes watches). Keys live under one prefix ("/dhtfs/" by default), so that one
 * etcd can hold other things too. Over TLS with a client certificate (etcd's --client-cert-auth) when
 * given credentials: the CLI reads them (src/cli/etcd-access.ts), this module takes their bytes.
 */
import assert from 'node:assert/strict';
import { Etcd3, type IKeyValue, type Lease } from 'etcd3';
import { StoreError, type Change, type Claim, type Entry, type Event, type Store } from './store.js';

/** How long a call to etcd may take before the store answers with an error (etcd away: a clear message, soon). */
const CALL_TIMEOUT_MS = 5000;

/**
 * etcd's TLS with mutual authentication: the CA its members' certificates are checked against, and this
 * client's certificate and key (PEM; without them, a client etcd refuses when it runs with --client-cert-auth).
 */
export interface EtcdTls {
  ca: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

/** gRPC's words for a failed TLS handshake, and what they mean to an operator. */
const TLS_REASONS: [RegExp, string][] = [
  [/alert bad certificate|alert certificate required|alert unknown ca|SSL alert number (42|48|116)/i, "etcd refused this client's TLS certificate (none, or one not signed by the CA etcd trusts: its --trusted-ca-file)"],
  [/unable to verify|self[- ]signed certificate|unable to get (local )?issuer|certificate verify failed/i, "etcd's certificate is not signed by the CA this client trusts (the ca.pem of its etcd credentials)"],
  [/Hostname\/IP does not match|altnames/i, "etcd's certificate does not name the endpoint's address (its subjectAltName)"],
  [/certificate has expired|certificate is not yet valid/i, 'a certificate is out of its validity period'],
  [/wrong version number|packet length too long|http_request/i, 'etcd does not speak TLS on this port (an http:// endpoint?)'],
];

export interface EtcdStoreOptions {
  prefix?: string;
  tls?: EtcdTls;
}

/**
 * grpc-js gives an IP endpoint's address as the TLS server name, which Node warns about once per process
 * (DEP0123: "Setting the TLS ServerName to an IP address..."), on every CLI command's stderr; the
 * certificate is checked against that address all the same (its subjectAltName IP). That one warning is
 * kept quiet; every other goes through.
 */
function quietIpServerName(): void {
  const emit = process.emitWarning as (...a: unknown[]) => void;
  if ((emit as { quiet?: boolean }).quiet) return;
  const quiet = (...a: unknown[]) => {
    const code = typeof a[1] === 'object' && a[1] ? (a[1] as { code?: string }).code : a[2];
    if (code !== 'DEP0123') emit.apply(process, a);
  };
  quiet.quiet = true;
  process.emitWarning = quiet as typeof process.emitWarning;
}

export class EtcdStore implements Store {
  readonly where: string;
  private readonly client: Etcd3;
  private readonly ns: ReturnType<Etcd3['namespace']>;

  readonly prefix: string;

  constructor(
    readonly endpoints: string[],
    opts: EtcdStoreOptions = {},
  ) {
    assert.ok(endpoints.length > 0, 'an etcd store needs an endpoint');
    this.prefix = opts.prefix ?? '/dhtfs/';
    this.where = `etcd ${endpoints.join(',')}`;
    if (opts.tls) quietIpServerName();
    const credentials = opts.tls && { rootCertificate: opts.tls.ca, certChain: opts.tls.cert, privateKey: opts.tls.key };
    this.client = new Etcd3({ hosts: endpoints, credentials, dialTimeout: CALL_TIMEOUT_MS, defaultCallOptions: () => ({ deadline: Date.now() + CALL_TIMEOUT_MS }) });
    this.ns = this.client.namespace(this.prefix);
  }

  private entry(kv: IKeyValue): Entry {
    const rev = Number(kv.mod_revision);
    assert.ok(Number.isSafeInteger(rev) && rev > 0, `etcd revision ${kv.mod_revision}`);
    return { key: this.unprefixed(kv.key), value: kv.value.toString(), rev };
  }

  /** The client strips the namespace from some answers (ranges) and not from others (gets, watches). */
  private unprefixed(key: Buffer): string {
    const k = key.toString();
    return k.startsWith(this.prefix) ? k.slice(this.prefix.length) : k;
  }

  private fail(e: unknown): never {
    const msg = (e as Error).message.replace(/\s*Resolution note:[^]*$/, '');
    const tls = TLS_REASONS.find(([re]) => re.test(msg));
    // A plaintext client's handshake with a TLS etcd fails without a word from it: say it may be that.
    // etcd ends a revoked client's connection after the handshake, which looks like no answer at all.
    const away = /No connection established/.test(msg);
    const plain = tls || !away ? '' : this.endpoints.every((x) => !x.startsWith('https://')) ? ' (etcd away, or on TLS: https:// with a client certificate)' : " (etcd away, or it ended this client's connections: a revoked certificate?)";
    throw new StoreError(this.where, tls ? `${tls[1]}: ${msg.split('\n')[0]}` : `${msg}${plain}`);
  }

  async get(key: string): Promise<Entry | null> {
    try {
      const r = await this.ns.get(key).exec();
      return r.kvs.length ? this.entry(r.kvs[0]) : null;
    } catch (e) {
      this.fail(e);
    }
  }

  async list(prefix: string): Promise<Entry[]> {
    try {
      const r = await this.ns.getAll().prefix(prefix).sort('Key', 'Ascend').exec();
      return r.kvs.map((kv) => this.entry(kv));
    } catch (e) {
      this.fail(e);
    }
  }

  async commit(changes: Change[]): Promise<boolean> {
    assert.ok(changes.length > 0);
    try {
      let txn = this.ns.if(changes[0].key, 'Version', '>', -1); // always true: a transaction needs one clause
      for (const c of changes) {
        if (c.ifRev === undefined) continue;
        txn = c.ifRev === 0 ? txn.and(c.key, 'Create', '==', 0) : txn.and(c.key, 'Mod', '==', c.ifRev);
      }
      const ops = changes.map((c) => (c.value === null ? this.ns.delete().key(c.key) : this.ns.put(c.key).value(c.value)));
      const r = await txn.then(...ops).commit();
      return r.succeeded;
    } catch (e) {
      this.fail(e);
    }
  }

  async claim(key: string, value: string, ttlSec: number): Promise<Claim | null> {
    let lease: Lease | undefined;
    try {
      lease = this.ns.lease(ttlSec, { autoKeepAlive: true });
      const id = await lease.grant();
      const r = await this.ns.if(key, 'Create', '==', 0).then(this.ns.put(key).value(value).lease(id)).commit();
      if (!r.succeeded) {
        await lease.revoke().catch(() => {});
        return null;
      }
    } catch (e) {
      await lease?.revoke().catch(() => {});
      this.fail(e);
    }
    const held = lease;
    const lost = new Promise<void>((resolve) => held.on('lost', () => resolve()));
    return {
      key,
      lost,
      release: async () => {
        await held.revoke().catch(() => {});
      },
    };
  }

  async watch(prefix: string, onEvent: (e: Event) => void): Promise<() => Promise<void>> {
    try {
      const w = await this.ns.watch().prefix(prefix).create();
      w.on('put', (kv) => onEvent({ key: this.unprefixed(kv.key), entry: this.entry(kv) }));
      w.on('delete', (kv) => onEvent({ key: this.unprefixed(kv.key), entry: null }));
      return async () => {
        await w.cancel();
      };
    } catch (e) {
      this.fail(e);
    }
  }

  async close(): Promise<void> {
    this.client.close();
  }
}
