/**
 * Where a cluster keeps its state (issue 19; docs/CLUSTER.md): peers, volumes, options, brick placement
 * and ports, task checkpoints. Two implementations behind this one narrow interface: etcd (etcd-store.ts)
 * for a pool of hosts, and a file under $DHTFS_HOME (local-store.ts) for one host, the embedded default.
 *
 * Every change is compare-and-set on revisions (etcd's model): two administrators who change the same
 * record from two hosts cannot both win, and the loser learns it (commit answers false) and reads again.
 * The data path never reads the store: clients and bricks keep working while it is away.
 */

import assert from 'node:assert/strict';
import { every, type Clock, type Timer } from '../common/env.js';

/** A key, its value and the revision of its last change (1 and up; a key that does not exist has none). */
export interface Entry {
  key: string;
  value: string;
  rev: number;
}

/**
 * One part of a commit: `value` null deletes the key. `ifRev` makes the whole commit conditional: 0,
 * the key must not exist; N, the key's last change must be revision N. Without it, the part is
 * unconditional.
 */
export interface Change {
  key: string;
  value: string | null;
  ifRev?: number;
}

/** A key held by one process while it lives and renews it (an etcd lease): a task's owner, a node's presence. */
export interface Claim {
  readonly key: string;
  /** Resolves when the claim is lost (its lease expired: the holder was away for its whole TTL). */
  readonly lost: Promise<void>;
  /** Gives the key up (deletes it) at once. */
  release(): Promise<void>;
}

/** A change seen by a watch: the key's new entry, or `deleted`. */
export type Event = { key: string; entry: Entry | null };

export interface Store {
  /** What this store is, for messages: "etcd http://10.0.0.1:2379" or "local /root/.dhtfs/store.json". */
  readonly where: string;
  get(key: string): Promise<Entry | null>;
  /** Every key under `prefix`, sorted by key. */
  list(prefix: string): Promise<Entry[]>;
  /** Applies every change or none: false (nothing applied) when one of their conditions does not hold. */
  commit(changes: Change[]): Promise<boolean>;
  /**
   * Makes `key` with `value`, held by this process for as long as it renews it (every ttl/3 seconds, done
   * by the store): null when the key exists (another holder).
   */
  claim(key: string, value: string, ttlSec: number): Promise<Claim | null>;
  /** Calls `onEvent` for every change under `prefix` from now on, in order; the result stops it. */
  watch(prefix: string, onEvent: (e: Event) => void): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

/** A store that cannot be reached, or refused: carries the store's `where`, so that a CLI message says which. */
export class StoreError extends Error {
  readonly code = 'ESTORE';
  constructor(where: string, message: string) {
    super(`cluster state (${where}): ${message}`);
  }
}

/**
 * Reads a JSON record, changes it with `f` and writes it back if nobody changed it in between, again from
 * the new value if somebody did (at most `attempts` times). `f` returns null to leave the record as it is.
 * Resolves to the record written (or left).
 */
export async function update<T>(store: Store, key: string, f: (cur: T | null) => T | null, attempts = UPDATE_ATTEMPTS): Promise<T | null> {
  for (let i = 0; i < attempts; i++) {
    const cur = await store.get(key);
    const old = cur ? (JSON.parse(cur.value) as T) : null;
    const next = f(old);
    if (next === null) return old;
    if (await store.commit([{ key, value: JSON.stringify(next), ifRev: cur?.rev ?? 0 }])) return next;
  }
  throw new StoreError(store.where, `${key} changed under ${attempts} attempts to change it; try again`);
}

/** How often update() reads again after another change won. */
export const UPDATE_ATTEMPTS = 20;

/**
 * A pass over the store, run once at start, on every change a watch on `prefix` sees that `wanted` lets
 * through, and every `everyMs` besides (for what a watch missed): never two passes at once (a kick waits
 * for the pass under way), a pass that throws goes to `failed`. The node daemon's bricks and its tasks.
 */
export class StoreLoop {
  private stopWatch: (() => Promise<void>) | null = null;
  private ticker: Timer | null = null;
  private passing: Promise<void> = Promise.resolve();
  /** stop() was called: nothing more is started, also by a start() still under way. */
  private stopped = false;

  constructor(
    private readonly store: Store,
    private readonly prefix: string,
    private readonly pass: () => Promise<void>,
    private readonly clock: Clock,
    private readonly everyMs: number,
    private readonly failed: (e: Error) => void,
    private readonly wanted: (e: Event) => boolean = () => true,
  ) {}

  async start(): Promise<void> {
    assert(!this.stopWatch && !this.ticker, 'StoreLoop started twice');
    const unwatch = await this.store.watch(this.prefix, (e) => {
      if (this.wanted(e)) void this.kick();
    });
    // A stop() while the watch was being set up: it is undone here, and no pass or timer starts.
    if (this.stopped) return unwatch();
    this.stopWatch = unwatch;
    await this.kick();
    if (this.stopped) return;
    this.ticker = every(this.clock, this.everyMs, () => void this.kick());
  }

  /** A pass now, after any pass already under way (none once stopped). */
  kick(): Promise<void> {
    if (this.stopped) return this.passing;
    this.passing = this.passing.then(() => this.pass()).catch((e) => this.failed(e as Error));
    return this.passing;
  }

  /** No more passes started by the watch or the timer; resolves once the one under way (if any) ended. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.ticker?.cancel();
    const unwatch = this.stopWatch;
    this.stopWatch = null;
    await unwatch?.();
    await this.passing;
  }
}
