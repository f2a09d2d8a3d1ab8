/** Real clock and randomness, for the product (edge code). */
import { randomBytes, randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
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

/** Small requests (gfids: 16 bytes per create) are served from a pool filled 4 KiB at a time. */
const POOL = 4096;
let pool = Buffer.alloc(0);
let used = 0;
function pooledBytes(n: number): Uint8Array {
  if (n > 256) return randomBytes(n);
  if (used + n > pool.length) {
    pool = randomBytes(POOL);
    used = 0;
  }
  const b = Buffer.from(pool.subarray(used, used + n));
  used += n;
  return b;
}

export const realRandom: Random = {
  bytes: pooledBytes,
  int: (max: number) => randomInt(max),
};

let hostIdentity: string | null | undefined;
/**
 * This boot of this machine: machine id and boot id. Two processes with the same one see the same
 * files (a brick's storage shared with another brick, or with a client, of this host).
 * DHTFS_HOST_ID overrides it, for hosts that share both (network namespaces, containers of one image):
 * processes with different ones never take a same-host shortcut between them.
 */
export function hostId(): string | null {
  if (hostIdentity === undefined && process.env.DHTFS_HOST_ID) hostIdentity = process.env.DHTFS_HOST_ID;
  if (hostIdentity === undefined) {
    try {
      const read = (f: string) => readFileSync(f, 'utf8').trim();
      hostIdentity = `${read('/etc/machine-id')}/${read('/proc/sys/kernel/random/boot_id')}`;
    } catch {
      hostIdentity = null;
    }
  }
  return hostIdentity;
}
