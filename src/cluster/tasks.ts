/**
 * Long tasks of a cluster taken over by the node daemons (issue 19, docs/CLUSTER.md "Tasks"): a volume's
 * rebalance or remove-brick drain runs under the volume's task claim (tasks/<vol>/owner, an etcd lease)
 * with its checkpoint in the store. When the claim lapses (the process or daemon running it died, or lost
 * the store for the claim's TTL) while the checkpoint says the run is still `running`, every node daemon's
 * TaskWatcher tries to take the claim (one etcd transaction: one wins) and the winner runs the task on from
 * its checkpoint. The old runner, if it still lives, is fenced per file by the bricks' migration lease and
 * stops when it learns its claim is lost.
 *
 * A daemon that stops on purpose (SIGTERM: `close({ handOn: true })`) hands its runs on instead of leaving
 * them to lapse: each stops at a file boundary (the migrations under way end, so their leases go), its
 * checkpoint still says running, tasks/<vol>/handed-on says so, and its claim is released: another
 * daemon's watch sees the claim go and takes the task over at once, without waiting for leases.
 *
 * What running a task means (a Rebalancer over a client of the volume) is injected (`TaskRun`), as are the
 * store and the clock: nothing here touches the network, files or processes.
 */
import type { Clock } from '../common/env.js';
import { StoreLoop, type Claim, type Store } from './store.js';
import { keys, parseVolume } from './records.js';

/** What a task is, written by its first runner: enough for another node to run it on. */
export interface TaskRecord {
  kind: 'rebalance' | 'remove-brick';
  mode: 'full' | 'fix-layout';
  force: boolean;
  throttle: string;
  leaseMs?: number;
  /** remove-brick: the bricks being drained. */
  bricks?: string[];
}

/** Who holds a task's claim (the value of tasks/<vol>/owner). */
export interface TaskOwner {
  host: string;
  pid: number;
  /** The node daemon holding it, when one took it over. */
  node?: string;
}

/** How a run was taken, and how it learns that its daemon is stopping. */
export interface TaskRunControl {
  /** The previous runner handed it on (no migration lease of its is left to wait out). */
  handedOn: boolean;
  /** True once this daemon stops: the run should end at the next file boundary with its checkpoint still `running`. */
  handOn: () => boolean;
}

/**
 * Runs `task` of volume `vol` on from its checkpoint under `claim` (held by the caller); resolves with the
 * run's end state (`running`: it stopped to be handed on).
 */
export type TaskRun = (vol: string, task: TaskRecord, claim: Claim, control: TaskRunControl) => Promise<string>;

export type TaskLog = (level: 'info' | 'warn' | 'error', msg: string) => void;

export interface TaskWatcherOptions {
  /** The claim's TTL: how long this daemon's run outlives the daemon in the store. */
  ttlSec: number;
  /** How often every volume's task is looked at (besides the watch on tasks/). */
  pollMs: number;
  /** After a run here that threw, how long before this daemon tries that volume again. */
  retryMs: number;
}

export const TASK_DEFAULTS: TaskWatcherOptions = { ttlSec: 10, pollMs: 5_000, retryMs: 30_000 };

/** The checkpoint's state, if it has one (a checkpoint is the rebalancer's; only its state is read here). */
function stateOf(value: string | undefined): string | null {
  if (value === undefined) return null;
  try {
    const s = (JSON.parse(value) as { state?: unknown }).state;
    return typeof s === 'string' ? s : null;
  } catch {
    return null;
  }
}

export class TaskWatcher {
  private readonly loop: StoreLoop;
  /** Volumes whose task runs in this daemon now. */
  private readonly running = new Map<string, Promise<void>>();
  /** Volume -> clock time before which this daemon does not try it again (its run here threw). */
  private readonly backoff = new Map<string, number>();
  private closed = false;
  /** This daemon is stopping and hands its runs on. */
  private handingOn = false;

  constructor(
    private readonly store: Store,
    /** This daemon's owner value (host, pid, node id), written in a claim it takes. */
    private readonly owner: TaskOwner,
    private readonly run: TaskRun,
    private readonly clock: Clock,
    private readonly log: TaskLog,
    private readonly opts: TaskWatcherOptions = TASK_DEFAULTS,
  ) {
    // A claim deleted (released or lapsed) is the moment to look; the poll catches what a watch missed.
    this.loop = new StoreLoop(
      store,
      'tasks/',
      () => this.scan(),
      clock,
      opts.pollMs,
      (e) => this.log('warn', `tasks: ${e.message}`),
      (e) => e.entry === null && e.key.endsWith('/owner'),
    );
  }

  start(): Promise<void> {
    return this.loop.start();
  }

  /** Looks at every volume's task now, after any look already under way. */
  kick(): Promise<void> {
    return this.loop.kick();
  }

  /** Volumes whose task runs here now. */
  tasks(): string[] {
    return [...this.running.keys()];
  }

  private async scan(): Promise<void> {
    if (this.closed) return;
    const byVol = new Map<string, Map<string, string>>();
    for (const e of await this.store.list('tasks/')) {
      const m = /^tasks\/([^/]+)\/(.+)$/.exec(e.key);
      if (!m) continue;
      if (!byVol.has(m[1])) byVol.set(m[1], new Map());
      byVol.get(m[1])!.set(m[2], e.value);
    }
    for (const [vol, t] of byVol) {
      if (this.running.has(vol) || t.has('owner') || stateOf(t.get('checkpoint')) !== 'running' || !t.has('task')) continue;
      if ((this.backoff.get(vol) ?? 0) > this.clock.now()) continue;
      const v = await this.store.get(keys.volume(vol));
      if (!v || parseVolume(v.key, v.value).state !== 'started') continue;
      let task: TaskRecord;
      try {
        task = JSON.parse(t.get('task')!) as TaskRecord;
      } catch {
        this.log('warn', `tasks/${vol}/task is not a task record; not taken over`);
        continue;
      }
      const claim = await this.store.claim(keys.task(vol), JSON.stringify(this.owner), this.opts.ttlSec);
      if (!claim) continue; // another daemon won it
      const handed = t.get('handed-on');
      if (handed !== undefined) {
        await this.store.commit([{ key: keys.handedOn(vol), value: null }]);
        this.log('info', `taking over the ${task.kind} of volume ${vol} (handed on by ${handed}): on from its checkpoint at once`);
      } else this.log('info', `taking over the ${task.kind} of volume ${vol} (its runner's claim lapsed while it was running): on from its checkpoint`);
      this.running.set(vol, this.runOne(vol, task, claim, handed !== undefined));
    }
  }

  private async runOne(vol: string, task: TaskRecord, claim: Claim, handedOn: boolean): Promise<void> {
    // A claim lost while the run went on (the store away for its TTL): another daemon may hold the task
    // now, so this one neither marks it handed on (that runner would be told, wrongly, that no lease of
    // the old one's is left) nor releases it.
    let lost = false;
    void claim.lost.then(() => (lost = true));
    try {
      const end = await this.run(vol, task, claim, { handedOn, handOn: () => this.handingOn });
      if (this.handingOn && end === 'running' && lost) this.log('warn', `the ${task.kind} of volume ${vol} stopped here with its claim lost meanwhile: not marked handed on (another daemon may run it now)`);
      else if (this.handingOn && end === 'running') {
        await this.store.commit([{ key: keys.handedOn(vol), value: this.owner.node ?? `${this.owner.host}:${this.owner.pid}` }]);
        this.log('info', `handed the ${task.kind} of volume ${vol} on (this daemon is stopping): stopped at a file boundary, its checkpoint says running, its claim released`);
      } else this.log('info', `the ${task.kind} of volume ${vol} taken over here ended: ${end}`);
    } catch (e) {
      this.log('error', `the ${task.kind} of volume ${vol} taken over here failed: ${(e as Error).message}; trying again in ${this.opts.retryMs / 1000} s`);
      this.backoff.set(vol, this.clock.now() + this.opts.retryMs);
    } finally {
      this.running.delete(vol);
      if ((!this.closed || this.handingOn) && !lost) await claim.release().catch(() => {});
    }
  }

  /**
   * Stops looking. With `handOn` (the daemon stops on purpose), every run under way here stops at a file
   * boundary and is handed on (above); resolves once each has released its claim. Without, a run under way
   * is left as it is (the daemon's process ends with it): its claim lapses within the TTL and another
   * node's daemon takes it over, as after a crash.
   */
  async close(o: { handOn?: boolean } = {}): Promise<void> {
    this.closed = true;
    await this.loop.stop();
    if (!o.handOn) return;
    this.handingOn = true;
    await Promise.all(this.running.values());
  }
}
