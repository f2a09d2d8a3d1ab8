/**
 * The simulator's world: one seed drives everything. Virtual time, an event queue, a PRNG, and the
 * Clock and Random that the real code (bricks, clients, migrators) is given instead of the real ones.
 * Runs are replayable: the same seed gives the same schedule.
 */
import type { Clock, Random, Timer } from '../common/env.js';
import { EventQueue, type Ev } from './event-queue.js';

/** SplitMix32-style PRNG: small, fast, good enough for scheduling. */
export class Prng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    this.s = (this.s + 0x9e3779b9) >>> 0;
    let z = this.s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  }
  /** Uniform in [0, n). */
  int(n: number): number {
    return n <= 1 ? 0 : this.next() % n;
  }
  chance(p: number): boolean {
    return this.next() / 0x100000000 < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }
}

const EPOCH_MS = 1_800_000_000_000;
/** Events queued as immediates at a time by run(). */
const RUN_BATCH = 64;

export class World {
  now = 0;
  private seq = 0;
  private queue = new EventQueue();
  readonly rng: Prng;
  events = 0;
  /**
   * Exploration: when set, the next event is chosen among the first `window` pending ones (0 = the
   * earliest, the default schedule; anything else is a preemption). An event run ahead of earlier ones
   * happens at the current time: time never goes back.
   */
  chooser: ((candidates: number) => number) | null = null;
  /**
   * Called after each event's own code (not its promise continuations, which run before the next
   * event): the always-on checkers (checkers/s3.ts) look at the state between two events.
   */
  afterEvent: (() => void) | null = null;
  window = 2;

  constructor(readonly seed: number) {
    this.rng = new Prng(seed);
  }

  /** Runs `fn` after `delay` virtual ms. */
  at(delay: number, fn: () => void, ch?: object): Ev {
    const ev: Ev = { t: this.now + Math.max(0, delay), seq: this.seq++, fn, dead: false, ch };
    this.queue.push(ev);
    return ev;
  }

  readonly clock: Clock = {
    now: () => this.now,
    wallNow: () => EPOCH_MS + this.now,
    setTimer: (ms: number, fn: () => void): Timer => {
      const ev = this.at(ms, fn);
      return { cancel: () => void (ev.dead = true) };
    },
    sleep: (ms: number) => new Promise<void>((r) => this.at(ms, r)),
  };

  readonly random: Random = {
    bytes: (n: number) => {
      const b = new Uint8Array(n);
      for (let i = 0; i < n; i++) b[i] = this.rng.next() & 0xff;
      return b;
    },
    int: (max: number) => this.rng.int(max),
  };

  /**
   * Runs events until `done()` or nothing is left or the virtual time limit passes. Between events, every
   * promise continuation the last event caused runs to completion, so the real code's async steps
   * interleave only at simulated events: deterministic. Each event runs in an immediate of its own, and
   * Node runs every nextTick and microtask between two immediates; queueing them in batches costs a
   * tenth of one macrotask turn (and a promise) per event.
   */
  run(done: () => boolean, limitMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let over = false;
      const step = () => {
        if (over) return;
        try {
          if (done() || !this.step(limitMs)) {
            over = true;
            resolve();
          }
        } catch (e) {
          over = true;
          reject(e);
        }
      };
      const batch = () => {
        if (over) return;
        for (let i = 0; i < RUN_BATCH; i++) setImmediate(step);
        setImmediate(batch);
      };
      batch();
    });
  }

  /** Runs the next event (the chooser's pick when exploring); false when none is left. */
  private step(limitMs: number): boolean {
    const ev = this.chooser ? this.choose(this.chooser) : this.queue.popLive();
    if (!ev) return false;
    if (ev.t > limitMs) throw new Error(`simulation passed ${limitMs} virtual ms without finishing (seed ${this.seed})`);
    this.now = Math.max(this.now, ev.t);
    this.events++;
    ev.fn();
    this.afterEvent?.();
    return true;
  }

  /**
   * Exploration's pick among the first `window` live events, each the earliest of its channel (an earlier
   * event of a channel is still pending: a later one of it is not a candidate); the others go back.
   */
  private choose(chooser: (candidates: number) => number): Ev | undefined {
    const cands: Ev[] = [];
    const passed: Ev[] = [];
    const seen = new Set<object>();
    while (cands.length < this.window) {
      const q = this.queue.popLive();
      if (!q) break;
      passed.push(q);
      if (q.ch && seen.has(q.ch)) continue;
      if (q.ch) seen.add(q.ch);
      cands.push(q);
    }
    const ev = cands.length > 1 ? cands[Math.min(cands.length - 1, chooser(cands.length))] : cands[0];
    for (const q of passed) if (q !== ev) this.queue.push(q);
    return ev;
  }
}
