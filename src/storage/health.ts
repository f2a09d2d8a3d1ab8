/**
 * A brick's guard against the file system below it (issue 17 item 4), as GlusterFS's posix health check
 * (storage.health-check-interval, storage.health-check-timeout) does. Edge code: timers and `fs`.
 *
 * - The watchdog: every synchronous DiskStorage call marks itself in memory a native thread watches
 *   (native/copy/at.c). A call in progress longer than `storageCallTimeoutMs` (a hung disk, a hard NFS
 *   mount below the brick) blocks the event loop, so no timer of the loop could see it: the thread logs
 *   the call and its path, shuts the process's sockets down (clients see this one brick down at once)
 *   and exits with STORAGE_HUNG_EXIT.
 * - The probe: at start and every `healthCheckIntervalMs`, a timestamp is written to
 *   `.glusterfs/health_check` (opened once, at start) and fsynced, off the event loop; a write or fsync that fails (EIO, EROFS, ... but ENOSPC and EDQUOT: a
 *   full disk is not a broken one) or does not finish within `healthCheckTimeoutMs` takes the brick down
 *   the same way.
 *
 * Both limits are read at every tick, so `volume set NAME limit.storage-call-timeout-ms N` (and the
 * others) take effect on a running brick.
 */
import fs from 'node:fs';
import type { BrickLimits } from '../wire/limits.js';
import { HEALTH_CHECK_FILE } from './storage.js';
import { O_CREAT, O_WRONLY } from './storage.js';
import { DiskStorage, setStorageWatchdogLimit, startStorageWatchdog, takeBrickDown } from './disk.js';

type Log = (level: 'info' | 'warn' | 'error', msg: string, extra?: Record<string, unknown>) => void;

/** Errors of a health check that do not take the brick down: the disk is full, not broken. */
const BENIGN = new Set(['ENOSPC', 'EDQUOT']);

export interface HealthCheck {
  stop(): void;
  /** Whether the native watchdog runs (false without the native/copy addon). */
  readonly watchdog: boolean;
}

export function startHealthCheck(storage: DiskStorage, brick: string, limits: Readonly<BrickLimits>, log: Log): HealthCheck {
  const watchdog = startStorageWatchdog(brick, limits.storageCallTimeoutMs);
  let fd: number | null = null;
  let inFlight = false;
  let last = Date.now();
  let stopped = false;

  const fail = (msg: string): never => takeBrickDown(`health check of brick ${brick}: ${msg}; taking the brick down`);

  const probe = (): void => {
    inFlight = true;
    const timeout = limits.healthCheckTimeoutMs;
    const started = Date.now();
    const timer = timeout > 0 ? setTimeout(() => fail(`a write and fsync of ${HEALTH_CHECK_FILE} did not finish in ${timeout} ms (health-check-timeout): the file system below the brick hangs`), timeout) : null;
    const done = (e: NodeJS.ErrnoException | null, what: string) => {
      if (timer) clearTimeout(timer);
      inFlight = false;
      last = Date.now();
      if (!e || stopped) return;
      const code = e.code ?? 'EIO';
      if (BENIGN.has(code)) {
        log('warn', `health check: ${what} of ${HEALTH_CHECK_FILE} failed with ${code} (not taken for a broken disk)`, { code });
        return;
      }
      fail(`${what} of ${HEALTH_CHECK_FILE} failed with ${code}`);
    };
    if (fd === null) {
      try {
        // Opened once (synchronously: the watchdog guards it) and kept: each probe only writes and syncs
        // (an open for writing would block the event loop on a frozen file system).
        fd = storage.open(HEALTH_CHECK_FILE, O_WRONLY | O_CREAT, 0o600);
      } catch (e) {
        done(e as NodeJS.ErrnoException, 'open');
        return;
      }
    }
    const stamp = Buffer.from(`${new Date(started).toISOString()}\n`);
    // Off the event loop (libuv's pool), so that the timer above sees a write or fsync that hangs.
    fs.write(fd, stamp, 0, stamp.length, 0, (e) => {
      if (e || stopped) return done(e, 'write');
      fs.fdatasync(fd!, (e2) => done(e2, 'fsync'));
    });
  };

  // The first check at once: it opens the file, and a brick whose disk cannot be written does not serve.
  if (limits.healthCheckIntervalMs > 0) probe();
  const tick = setInterval(() => {
    setStorageWatchdogLimit(limits.storageCallTimeoutMs);
    const every = limits.healthCheckIntervalMs;
    if (every > 0 && !inFlight && Date.now() - last >= every) probe();
  }, 250);
  tick.unref();
  if (!watchdog) log('warn', 'no storage watchdog (the native/copy addon is missing): a storage call that hangs blocks this brick until it returns');
  return {
    watchdog,
    stop() {
      stopped = true;
      clearInterval(tick);
      setStorageWatchdogLimit(0);
      if (fd !== null) fs.close(fd, () => {});
      fd = null;
    },
  };
}
