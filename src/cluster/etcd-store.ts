/**
 * The cluster's state in etcd (Debian's etcd-server; the etcd3 client, which speaks etcd's gRPC API, keeps
 * leases alive and re-establishes watches). Keys live under one prefix ("/dhtfs/" by default), so that one
 * etcd can hold other things too.
 */
import assert from 'node:assert/strict';
import { Etcd3, type IKeyValue, type Lease } from 'etcd3';
import { StoreError, type Change, type Claim, type Entry, type Event, type Store } from './store.js';

/** How long a call to etcd may take before the store answers with an error (etcd away: a clear message, soon). */
const CALL_TIMEOUT_MS = 5000;

export class EtcdStore implements Store {
  readonly where: string;
  private readonly client: Etcd3;
  private readonly ns: ReturnType<Etcd3['namespace']>;

  constructor(
    readonly endpoints: string[],
    readonly prefix = '/dhtfs/',
  ) {
    assert.ok(endpoints.length > 0, 'an etcd store needs an endpoint');
    this.where = `etcd ${endpoints.join(',')}`;
    this.client = new Etcd3({ hosts: endpoints, dialTimeout: CALL_TIMEOUT_MS, defaultCallOptions: () => ({ deadline: Date.now() + CALL_TIMEOUT_MS }) });
    this.ns = this.client.namespace(prefix);
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
    throw new StoreError(this.where, (e as Error).message);
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
