/**
 * The simulator's world: one seed drives everything. Virtual time, an event queue, a PRNG, and the
 * Clock and Random that the real code (bricks, clients, migrators) is given instead of the real ones.
 * Runs are replayable: the same seed gives the same schedule.
 */
import type { Clock, Random, Timer } from '../common/env.js';

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

interface Ev {
  t: number;
  seq: number;
  fn: () => void;
  dead: boolean;
}

const EPOCH_MS = 1_800_000_000_000;

export class World {
  now = 0;
  private seq = 0;
  private queue: Ev[] = [];
  readonly rng: Prng;
  events = 0;

  constructor(readonly seed: number) {
    this.rng = new Prng(seed);
  }

  /** Runs `fn` after `delay` virtual ms. */
  at(delay: number, fn: () => void): Ev {
    const ev = { t: this.now + Math.max(0, delay), seq: this.seq++, fn, dead: false };
    // Insert keeping (t, seq) order; queues stay small, a binary search suffices.
    let lo = 0;
    let hi = this.queue.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const q = this.queue[mid];
      if (q.t < ev.t || (q.t === ev.t && q.seq < ev.seq)) lo = mid + 1;
      else hi = mid;
    }
    this.queue.splice(lo, 0, ev);
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
   * promise continuation the last event caused runs to completion (one macrotask turn drains them all),
   * so the real code's async steps interleave only at simulated events: deterministic.
   */
  async run(done: () => boolean, limitMs: number): Promise<void> {
    for (;;) {
      await new Promise<void>((r) => setImmediate(r));
      if (done()) return;
      const ev = this.queue.shift();
      if (!ev) return;
      if (ev.dead) continue;
      if (ev.t > limitMs) throw new Error(`simulation passed ${limitMs} virtual ms without finishing (seed ${this.seed})`);
      this.now = ev.t;
      this.events++;
      ev.fn();
    }
  }
}
