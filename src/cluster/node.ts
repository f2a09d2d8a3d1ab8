/**
 * The node daemon's core (issue 19; the counterpart of GlusterFS's glusterd): it runs the bricks the
 * cluster's store places on this node, for every started volume, and says how each is doing in the store.
 *
 * - A brick is started on the port its record names (clients know it), or, with none yet or that one
 *   taken, on one the brick binds itself from the port range; a new port is written to the volume's record
 *   and announced to the volume's bricks (a topology one version up), which tell their clients.
 * - A brick that exits unexpectedly is started again after a back-off that doubles; one that exits
 *   `maxExits` times within `restartWindowMs` is marked failed with the reason, and left alone (not looped
 *   on) until its volume is stopped and started again.
 * - A brick whose volume is stopped, deleted, or no longer places it here is stopped.
 *
 * Processes are the BrickRunner's (brick-runner.ts in the product, a fake in tests); the store and the
 * clock are injected too. Nothing here is on the data path: clients never wait for a node daemon.
 */
import type { Clock, Timer } from '../common/env.js';
import type { Store } from './store.js';
import { StoreLoop, update } from './store.js';
import { keys, parseVolume, type BrickStatus, type PlacedBrick, type VolumeRecord } from './records.js';

export interface RunningBrick {
  pid: number;
  port: number;
  /** Resolves with how the process ended ("exit code 1", "signal SIGKILL"). */
  exited: Promise<string>;
  /** Stops it (SIGTERM, then SIGKILL); resolves once it is gone. */
  stop(): Promise<void>;
}

export interface BrickRunner {
  /** Starts a brick process for `b` of `v` on `port` (0: one of the port range); resolves once it listens. */
  start(v: VolumeRecord, b: PlacedBrick, port: number): Promise<RunningBrick>;
  /** A process this node started before it restarted, if it still runs and serves `b` (adopted, not restarted). */
  adopt?(v: VolumeRecord, b: PlacedBrick, status: BrickStatus): Promise<RunningBrick | null>;
}

/** Tells a volume's bricks its topology (the record's bricks and ports, one version up), as `volume start` does. */
export type Announce = (v: VolumeRecord) => Promise<void>;

export type NodeLog = (level: 'info' | 'warn' | 'error', msg: string) => void;

export interface NodeOptions {
  /** Exits counted for the failed verdict are those within this window. */
  restartWindowMs: number;
  maxExits: number;
  /** The first restart's delay; it doubles with each exit in the window, up to maxBackoffMs. */
  backoffMs: number;
  maxBackoffMs: number;
  /** How often the whole placement is looked at again (besides the store's watch). */
  reconcileMs: number;
}

export const NODE_DEFAULTS: NodeOptions = { restartWindowMs: 60_000, maxExits: 5, backoffMs: 500, maxBackoffMs: 10_000, reconcileMs: 5_000 };

interface Slot {
  vol: string;
  brick: string;
  proc: RunningBrick | null;
  /** Times of unexpected exits within the window. */
  exits: number[];
  state: BrickStatus['state'];
  timer: Timer | null;
  /** Being stopped on purpose: its exit is not a failure. */
  stopping: boolean;
  /** Start on port 0 next time: the recorded one was taken. */
  anyPort: boolean;
}

export class NodeDaemon {
  private readonly slots = new Map<string, Slot>();
  private readonly loop: StoreLoop;
  private closed = false;

  constructor(
    private readonly store: Store,
    readonly id: string,
    private readonly runner: BrickRunner,
    private readonly announce: Announce,
    private readonly clock: Clock,
    private readonly log: NodeLog,
    private readonly opts: NodeOptions = NODE_DEFAULTS,
  ) {
    this.loop = new StoreLoop(
      store,
      keys.volumes,
      () => this.reconcile(),
      clock,
      opts.reconcileMs,
      (e) => this.log('warn', `reconcile: ${e.message}`),
    );
  }

  /** Reconciles at once, on every change under volumes/, and every reconcileMs besides. */
  start(): Promise<void> {
    return this.loop.start();
  }

  /** Reconciles now, after any reconciliation already running (never two at once). */
  kick(): Promise<void> {
    return this.loop.kick();
  }

  /** The bricks this node runs now, by "volume/brick", with their state. */
  bricks(): Record<string, { state: BrickStatus['state']; pid: number | null; port: number | null; exits: number }> {
    return Object.fromEntries([...this.slots].map(([k, s]) => [k, { state: s.state, pid: s.proc?.pid ?? null, port: s.proc?.port ?? null, exits: s.exits.length }]));
  }

  private async reconcile(): Promise<void> {
    if (this.closed) return;
    const wanted = new Map<string, { v: VolumeRecord; b: PlacedBrick }>();
    for (const e of await this.store.list(keys.volumes)) {
      let v: VolumeRecord;
      try {
        v = parseVolume(e.key, e.value);
      } catch (err) {
        this.log('warn', (err as Error).message);
        continue;
      }
      if (v.state !== 'started') continue;
      for (const b of v.bricks) if (b.node === this.id) wanted.set(`${v.name}/${b.name}`, { v, b });
    }
    for (const [k, s] of [...this.slots]) if (!wanted.has(k)) await this.retire(k, s);
    for (const [k, { v, b }] of wanted) {
      if (this.slots.has(k)) continue;
      const s: Slot = { vol: v.name, brick: b.name, proc: null, exits: [], state: 'starting', timer: null, stopping: false, anyPort: false };
      this.slots.set(k, s);
      const prior = await this.store.get(keys.brickStatus(v.name, b.name));
      const adopted = prior && this.runner.adopt ? await this.runner.adopt(v, b, JSON.parse(prior.value) as BrickStatus).catch(() => null) : null;
      if (adopted) {
        this.log('info', `brick ${k}: adopted its running process ${adopted.pid} on port ${adopted.port}`);
        await this.running(s, adopted);
      } else await this.launch(s);
    }
  }

  /** The volume and brick records of a slot now (null: no longer placed here, or not started). */
  private async placed(s: Slot): Promise<{ v: VolumeRecord; b: PlacedBrick } | null> {
    const e = await this.store.get(keys.volume(s.vol));
    if (!e) return null;
    const v = parseVolume(e.key, e.value);
    const b = v.bricks.find((x) => x.name === s.brick && x.node === this.id);
    return v.state === 'started' && b ? { v, b } : null;
  }

  private async launch(s: Slot): Promise<void> {
    if (this.closed || s.stopping) return;
    const p = await this.placed(s).catch(() => null);
    if (!p) return;
    s.state = 'starting';
    await this.report(s, { reason: undefined });
    let proc: RunningBrick;
    try {
      proc = await this.runner.start(p.v, p.b, s.anyPort ? 0 : p.b.port);
    } catch (e) {
      const msg = (e as Error).message;
      if (/EADDRINUSE/.test(msg) && p.b.port !== 0 && !s.anyPort) {
        this.log('warn', `brick ${s.vol}/${s.brick}: its port ${p.b.port} is taken; it takes another of the range`);
        s.anyPort = true;
        return this.launch(s);
      }
      return this.exited(s, `did not start: ${msg}`);
    }
    if (proc.port !== p.b.port) await this.movePort(s, proc.port);
    await this.running(s, proc);
  }

  private async running(s: Slot, proc: RunningBrick): Promise<void> {
    s.proc = proc;
    s.state = 'online';
    await this.report(s, {});
    void proc.exited.then((how) => {
      if (s.proc !== proc) return;
      s.proc = null;
      if (s.stopping || this.closed) return;
      void this.exited(s, how);
    });
  }

  /** An unexpected end (or a failed start): restart after a back-off, or give up when it keeps happening. */
  private async exited(s: Slot, how: string): Promise<void> {
    const now = this.clock.now();
    s.exits = [...s.exits.filter((t) => now - t < this.opts.restartWindowMs), now];
    if (s.exits.length >= this.opts.maxExits) {
      s.state = 'failed';
      const reason = `exited ${s.exits.length} times within ${this.opts.restartWindowMs / 1000} s; last: ${how}`;
      this.log('error', `brick ${s.vol}/${s.brick} ${reason}: not restarted until its volume is started again`);
      await this.report(s, { reason });
      return;
    }
    const delay = Math.min(this.opts.maxBackoffMs, this.opts.backoffMs * 2 ** (s.exits.length - 1));
    s.state = 'restarting';
    this.log('warn', `brick ${s.vol}/${s.brick} ${how}; restarting it in ${delay} ms`);
    await this.report(s, { reason: how });
    s.timer = this.clock.setTimer(delay, () => {
      s.timer = null;
      void this.launch(s).catch((e) => this.log('error', `brick ${s.vol}/${s.brick}: ${(e as Error).message}`));
    });
  }

  /** The brick now listens on another port: the volume's record says so, and its bricks are told. */
  private async movePort(s: Slot, port: number): Promise<void> {
    const v = await update<VolumeRecord>(this.store, keys.volume(s.vol), (cur) => {
      if (!cur) return null;
      const b = cur.bricks.find((x) => x.name === s.brick);
      if (!b || b.port === port) return null;
      return { ...cur, version: b.pending ? cur.version : cur.version + 1, bricks: cur.bricks.map((x) => (x.name === s.brick ? { ...x, port } : x)) };
    });
    if (!v || v.bricks.find((x) => x.name === s.brick)?.pending) return;
    this.log('info', `brick ${s.vol}/${s.brick} listens on port ${port} now; telling the volume's bricks`);
    await this.announce(v).catch((e) => this.log('warn', `volume ${s.vol}: the new port could not be announced to every brick: ${(e as Error).message}`));
  }

  private async retire(k: string, s: Slot): Promise<void> {
    s.stopping = true;
    s.timer?.cancel();
    this.slots.delete(k);
    if (s.proc) {
      this.log('info', `brick ${k}: stopping (its volume is stopped or it is placed elsewhere)`);
      await s.proc.stop();
    }
    s.state = 'stopped';
    s.proc = null;
    await this.report(s, {}).catch(() => {});
  }

  private async report(s: Slot, extra: { reason?: string }): Promise<void> {
    const st: BrickStatus = { node: this.id, state: s.state, pid: s.proc?.pid ?? null, port: s.proc?.port ?? 0, exits: s.exits.length, at: new Date(this.clock.wallNow()).toISOString() };
    if (extra.reason) st.reason = extra.reason;
    await this.store.commit([{ key: keys.brickStatus(s.vol, s.brick), value: JSON.stringify(st) }]).catch((e) => this.log('warn', `status of ${s.vol}/${s.brick} not written: ${(e as Error).message}`));
  }

  /** Stops watching; with `bricks`, stops the bricks too (otherwise they keep serving: the data path needs no daemon). */
  async close(opts: { bricks?: boolean } = {}): Promise<void> {
    this.closed = true;
    await this.loop.stop();
    for (const s of this.slots.values()) {
      s.timer?.cancel();
      s.stopping = true;
      if (opts.bricks && s.proc) await s.proc.stop();
    }
  }
}
