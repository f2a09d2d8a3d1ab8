/** Real clock and randomness, for the product (edge code). */
import { randomBytes, randomInt } from 'node:crypto';
import type { Clock, Random, Timer } from './env.js';

export const realClock: Clock = {
  now: () => performance.now(),
  wallNow: () => Date.now(),
  setTimer(ms: number, fn: () => void): Timer {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return { cancel: () => clearTimeout(t) };
  },
  sleep: (ms: number) => new Promise((r) => setTimeout(r, ms)),
};

export const realRandom: Random = {
  bytes: (n: number) => randomBytes(n),
  int: (max: number) => randomInt(max),
};
