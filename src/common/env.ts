/**
 * The narrow interfaces through which protocol logic reaches time and randomness. Real
 * implementations are in ./real-env.ts; the simulator supplies deterministic ones.
 */
export interface Timer {
  cancel(): void;
}

export interface Clock {
  /** Milliseconds, monotonic. */
  now(): number;
  /** Wall-clock time in milliseconds since the epoch (for file times). */
  wallNow(): number;
  setTimer(ms: number, fn: () => void): Timer;
  sleep(ms: number): Promise<void>;
}

export interface Random {
  bytes(n: number): Uint8Array;
  /** Uniform integer in [0, max). */
  int(max: number): number;
}

/** Calls `fn` every `ms` on `clock` (the first call after `ms`) until the returned timer is cancelled. */
export function every(clock: Clock, ms: number, fn: () => void): Timer {
  let timer: Timer | null = null;
  let cancelled = false;
  const tick = () => {
    if (cancelled) return;
    fn();
    timer = clock.setTimer(ms, tick);
  };
  timer = clock.setTimer(ms, tick);
  return {
    cancel: () => {
      cancelled = true;
      timer?.cancel();
    },
  };
}
