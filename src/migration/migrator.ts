/**
 * The migrator's half of the safe migration protocol (docs/MIGRATION.md): moves one file from the brick
 * that holds it (src) to its hashed brick (dst), step by step, in the order of SAFE_STEPS. The bricks'
 * half is in src/migration/src-state.ts (src's rules) and src/brick/ops/mig-src.ts, mig-dst.ts.
 */
import type { Reply } from '../wire/ops.js';
import { EMOVED, FsError, codeOf, ignoreCodes, bestEffort, nullOnFailure } from '../common/errors.js';
import type { Timer } from '../common/env.js';
import type { BrickFd, DhtClient, Located } from '../dht/client.js';
import { supersededInstall } from './records.js';
import type { Attr } from '../wire/types.js';
import { S_IFMT, S_IFREG, O_RDONLY } from '../storage/storage.js';
import type { SafeStep } from './steps.js';

export interface MigrateOptions {
  /** Lease length; the migrator renews it at a third of this. */
  leaseMs?: number;
  /** Called after each step; a test can hold the migrator there. */
  afterStep?: (step: SafeStep, path: string) => Promise<void> | void;
  /** Bytes per copy request. */
  chunk?: number;
  /** Copy requests in flight. */
  window?: number;
  /** Stop re-copying when a round leaves less than this many dirty bytes. */
  settleBytes?: number;
  maxRecopyRounds?: number;
  /** Shared by the migrations of one rebalancer, so that their bulk copying holds while a file switches. */
  gate?: SwitchGate;
  /** Counts copied bytes as they go (progress). */
  onBytes?: (n: number) => void;
  /** Let dst read src's file straight from its disk when both bricks are on one host (default true). */
  pull?: boolean;
  /**
   * A file with several names: all of them (volume paths, `path` among them). The data moves once, to
   * `dst`; install gives every name its place there, and each name's hashed brick a linkto to it.
   */
  links?: string[];
  /** The brick to move to (default: the name's hashed brick). */
  dst?: string;
}

/** src's file as dst may read it directly (migSource), while that works. */
interface Pull {
  source: Reply<'migSource'>['source'];
}

export type MigrateOutcome =
  | { result: 'migrated'; bytes: number; src: string; dst: string }
  | { result: 'nothing'; reason: string }
  | { result: 'skipped'; reason: string };

/**
 * While a file switches (freeze to install), clients of that file wait; the switch's fsyncs must not
 * also write out what other migrations are copying at the time (a journal commit flushes other files'
 * allocated data too). So the migrations of one rebalancer share a gate: bulk copying and pre-freeze
 * fsyncs wait while any file is switching. Promises only: no timers, same in the simulator.
 */
export class SwitchGate {
  /** Files switching. */
  private switching = new Count();
  /** Bulk work in flight: copy pieces and first-round fsyncs (begun before a switch began, not held). */
  private bulkWork = new Count();

  enter(): void {
    this.switching.up();
  }

  leave(): void {
    this.switching.down();
  }

  /** Resolves when no file is switching. */
  open(): Promise<void> {
    return this.switching.zero();
  }

  /** A piece of bulk work begins (counted for quiet()) ... */
  bulkBegins(): void {
    this.bulkWork.up();
  }

  /** ... and ends. */
  bulkEnds(): void {
    this.bulkWork.down();
  }

  /** Resolves when no bulk work is in flight (the freeze waits for what began before the switch). */
  quiet(): Promise<void> {
    return this.bulkWork.zero();
  }
}

/** A count and the promises waiting for it to be zero. */
class Count {
  private n = 0;
  private waiters: (() => void)[] = [];

  up(): void {
    this.n++;
  }

  down(): void {
    if (--this.n > 0) return;
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  async zero(): Promise<void> {
    while (this.n > 0) await new Promise<void>((r) => this.waiters.push(r));
  }
}

interface Dirty {
  ranges: [number, number][];
  attrs: boolean;
}

/** How long a migration's lease on its source brick lasts without renewal, by default. */
export const MIGRATION_LEASE_MS = 5000;

const DEFAULTS = { leaseMs: MIGRATION_LEASE_MS, chunk: 2 * 1024 * 1024, window: 4, settleBytes: 256 * 1024, maxRecopyRounds: 8 };

/**
 * Copies ranges of src to the temp file on dst, pipelined: dst reads them from src's disk itself when the
 * two bricks share a host (`pull`), otherwise they come through the migrator's fd on src. `bulk` copies
 * (before the freeze) hold while another file switches.
 */
async function copyRanges(c: DhtClient, srcFd: BrickFd, dstFd: BrickFd, ranges: [number, number][], o: typeof DEFAULTS & MigrateOptions, bulk: boolean, pull: Pull, again = true): Promise<number> {
  const pieces: [number, number][] = [];
  for (const [a, b] of ranges) for (let off = a; off < b; off += o.chunk) pieces.push([off, Math.min(b, off + o.chunk)]);
  let next = 0;
  let copied = 0;
  /** One piece; `buf` is the worker's own (see below). Returns the bytes copied. */
  const copyPiece = async (a: number, b: number, buf: () => Buffer): Promise<number> => {
    if (pull.source) {
      try {
        return (await c.fdCall(dstFd, 'migPull', { source: pull.source, offset: a, length: b - a, again })).copied;
      } catch (e) {
        // dst cannot read src's disk (another host, an older brick): the copy goes through here.
        ignoreCodes(e, 'EXDEV', 'ENOSYS');
        pull.source = null;
      }
    }
    const r = await c.fdCall(srcFd, 'read', { offset: a, length: b - a }, buf());
    if (r.data.length === 0) return 0; // beyond src's end now: the final size settles it
    await c.fdCall(dstFd, 'write', { offset: a, data: r.data });
    return r.data.length;
  };
  const worker = async () => {
    // Each worker reads into its own buffer, reused: its write has been answered (so sent) before the
    // next read lands there. Fresh multi-megabyte buffers per piece cost more than the copy.
    let own: Buffer | null = null;
    const buf = () => (own ??= Buffer.allocUnsafe(o.chunk));
    while (next < pieces.length) {
      if (bulk) await o.gate?.open();
      if (next >= pieces.length) break;
      const [a, b] = pieces[next++];
      if (bulk) o.gate?.bulkBegins();
      try {
        const n = await copyPiece(a, b, buf);
        copied += n;
        o.onBytes?.(n);
      } finally {
        if (bulk) o.gate?.bulkEnds();
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(o.window, pieces.length) }, worker));
  return copied;
}

/** The data segments of src's file below `size` (all of it from a brick that cannot tell). */
async function dataSegments(c: DhtClient, src: string, gfid: string, token: string, size: number): Promise<[number, number][]> {
  const out: [number, number][] = [];
  for (let offset: number | null = 0; offset !== null && offset < size; ) {
    let r: { segments: [number, number][]; next: number | null };
    try {
      r = await c.sv(src).call('migSegments', { gfid, token, offset });
    } catch (e) {
      ignoreCodes(e, 'ENOSYS');
      return size > 0 ? [[0, size]] : [];
    }
    for (const [a, b] of r.segments) if (a < size) out.push([a, Math.min(b, size)]);
    offset = r.next;
  }
  return out;
}

const total = (rs: [number, number][]) => rs.reduce((s, [a, b]) => s + (b - a), 0);

/** What a migration of `path` would move, or why there is nothing to do (shared by both protocols). */
export async function migrationTarget(c: DhtClient, path: string): Promise<{ loc: Located; src: string; dst: string; gfid: string } | MigrateOutcome> {
  const loc = await c.locate(path);
  if (loc.isDir) return { result: 'nothing', reason: 'directory' };
  if ((loc.attr.mode & S_IFMT) !== S_IFREG) return { result: 'skipped', reason: 'not a regular file' };
  const src = loc.cached;
  const dst = loc.hashed;
  const gfid = loc.attr.gfid;
  if (!dst || dst === src) return { result: 'nothing', reason: 'already on its hashed brick' };
  if (!gfid) return { result: 'skipped', reason: 'no gfid' };
  return { loc, src, dst, gfid };
}

/**
 * Migrates one file to its hashed brick. Before the commit, any failure aborts the migration (src drops
 * the lease and the file stays where it was); after it, the remaining steps are finished by whoever
 * meets the file next if this run cannot.
 */
export async function migrateFile(c: DhtClient, path: string, opts: MigrateOptions = {}): Promise<MigrateOutcome> {
  const given = Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)) as MigrateOptions;
  const o = { ...DEFAULTS, ...given };
  const step = async (s: SafeStep) => {
    await o.afterStep?.(s, path);
  };
  const target = await migrationTarget(c, path);
  if ('result' in target) return target;
  const { loc, src, gfid } = target;
  const dst = o.dst ?? target.dst;
  if (dst === src) return { result: 'nothing', reason: 'already there' };
  if (loc.attr.nlink > 1 && o.links?.length !== loc.attr.nlink) return { result: 'skipped', reason: 'hard links' };
  const links = loc.attr.nlink > 1 ? o.links : undefined;

  // lease: src grants a token and starts tracking changes.
  let lease: { token: string; attr: Attr };
  try {
    lease = await c.sv(src).call('migLease', { path, gfid, dst, leaseMs: o.leaseMs, links });
  } catch (e) {
    if (codeOf(e) === 'EMLINK') return { result: 'skipped', reason: 'hard links' };
    if (codeOf(e) === EMOVED) return { result: 'nothing', reason: 'migrated meanwhile' };
    throw e;
  }
  const token = lease.token;
  let renewer: Timer | null = null;
  let ended = false;
  const renew = () => {
    if (ended) return;
    renewer = c.clock.setTimer(o.leaseMs / 3, () => {
      c.sv(src)
        .call('migRenew', { gfid, token, leaseMs: o.leaseMs })
        .then(renew, () => {});
    });
  };
  renew();
  // The migrator's fds, each bound to its connection: after a reconnect, their numbers may name other
  // files (another migration's copy), so a call on them is refused and the migration aborts.
  let srcFd: BrickFd | null = null;
  let dstFd: BrickFd | null = null;
  let committed = false;
  let switching = false;
  const switchOn = (on: boolean) => {
    if (on === switching) return;
    switching = on;
    if (on) o.gate?.enter();
    else o.gate?.leave();
  };
  try {
    await step('lease');

    // prepare-dst: a linkto to src at the name on dst, and a private temp file for this token.
    dstFd = c.fdOn(dst, (await c.sv(dst).call('migPrepare', { path, gfid, src, token, uid: lease.attr.uid, gid: lease.attr.gid, links })).fd);
    await step('prepare-dst');

    // copy: everything, through the migrator's own fd on src.
    srcFd = c.fdOn(src, (await c.sv(src).call('open', { gfid, flags: O_RDONLY })).fd);
    const [sF, dF] = [srcFd, dstFd];
    // Bricks of one host: dst reads the file from src's disk itself (what clients change meanwhile is
    // tracked by src all the same).
    const pull: Pull = { source: null };
    if (o.pull !== false) pull.source = await c.sv(src).call('migSource', { gfid, token }).then((r) => r.source, () => null);
    // Only the data: src's holes stay holes in the copy (sized by migFinalize's ftruncate).
    let bytes = await copyRanges(c, sF, dF, await dataSegments(c, src, gfid, token, lease.attr.size), o, true, pull, false);
    await step('copy');

    // recopy: what clients changed meanwhile, until little is left. Each round ends with the copy (and
    // src) made durable, so what the freeze still has to copy and fsync is only what clients wrote
    // during the last round: the switch's pause is short, however large the file.
    // From the second round on, the file is switching: its rounds are small, and other migrations hold
    // their bulk copying meanwhile so that these fsyncs and the freeze's wait on nothing but this file.
    // A small file goes straight to the freeze, which hands over all that clients changed since the
    // lease: copying and syncing that much is quick, and the rounds (each with two fsyncs) exist only
    // to keep a large file's switch short.
    const rounds = bytes <= o.settleBytes ? 0 : o.maxRecopyRounds;
    for (let round = 0; round < rounds; round++) {
      const d = await c.sv(src).call('migDirty', { gfid, token });
      if (round === 1) switchOn(true);
      bytes += await copyRanges(c, sF, dF, d.ranges, o, round === 0, pull);
      // From the second round on, the file is about to switch: its bricks' whole file systems are made
      // durable, so that the switch's fsyncs have nothing but the switch to write out.
      const all = round > 0;
      const fsyncs = () => Promise.all([c.fdCall(dF, 'fsync', { datasync: true, all }), c.fdCall(sF, 'fsync', { datasync: true, all })]);
      if (round === 0) {
        // The first round's fsync writes out the whole copy: bulk work, like the copying.
        await o.gate?.open();
        o.gate?.bulkBegins();
        try {
          await fsyncs();
        } finally {
          o.gate?.bulkEnds();
        }
      } else await fsyncs();
      const left = total(d.ranges);
      if (left === 0 || (round > 0 && left < o.settleBytes)) break;
    }
    await step('recopy');

    // freeze: src holds changes; the last ranges and the attributes. (Not while other migrations' bulk
    // work begun before this switch still runs: the switch's fsyncs would wait for its writeback.)
    switchOn(true);
    await o.gate?.quiet();
    const fr = await c.sv(src).call('migFreeze', { gfid, token });
    await step('freeze');

    // final-copy: the last ranges, size, attributes, xattrs; the copy made durable.
    bytes += await copyRanges(c, sF, dF, fr.dirty.ranges, o, false, pull);
    const a = fr.attr;
    await c.fdCall(dF, 'migFinalize', { size: a.size, mode: a.mode & 0o7777, uid: a.uid, gid: a.gid, atime: a.atime, mtime: a.mtime, xattrs: fr.xattrs });
    await step('final-copy');

    // commit: src records "moved to dst" under the lease. From here on, dst's copy is the file.
    await c.sv(src).call('migCommit', { gfid, token });
    committed = true;
    await step('commit');

    // install: the copy replaces the linkto at the name on dst. A client may have renamed another file
    // over the name, or renamed or unlinked this one, since the commit: then the copy is not the file's
    // any more, and the commit record goes with the old copy.
    const superseded = await c.sv(dst)
      .call('migInstall', { path, gfid, token, durable: true })
      .then(
        () => false,
        (e) => {
          if (!supersededInstall(e)) throw e;
          return true;
        },
      );
    switchOn(false);
    await step('install');

    // The file's other names: each one's hashed brick gets a linkto to dst (it had one to src).
    for (const name of links ?? []) {
      const hashed = await c.hashedOf(name).catch(nullOnFailure('hashedOf', c.log));
      if (!hashed || hashed === dst) continue;
      const there = await c.sv(hashed).call('lookup', { path: name }).catch(nullOnFailure('lookup', c.log));
      if (there && (there.linkto === undefined || there.gfid !== gfid)) continue; // another file now
      if (there?.linkto === dst) continue;
      await c.sv(hashed)
        .call('mklinkto', { path: name, gfid, target: dst, uid: lease.attr.uid, gid: lease.attr.gid, keepTimes: true, replace: !!there })
        .catch(bestEffort('mklinkto', c.log)); // a lookup repairs it
    }

    // cleanup: src's old copy goes (unless a client that met the commit record removed it already),
    // under every name it has.
    for (const name of links ?? [path]) {
      await c.sv(src)
        .call('migCleanup', { path: name, gfid })
        .catch((e) => {
          ignoreCodes(e, 'ENOENT', 'ESTALE');
        });
    }
    await step('cleanup');

    // release: the lease ended with the commit; close what the migrator opened.
    await step('release');
    if (superseded) return { result: 'skipped', reason: 'renamed over, renamed or unlinked while it was migrated' };
    return { result: 'migrated', bytes, src, dst };
  } catch (e) {
    if (!committed) {
      await c.sv(src)
        .call('migAbort', { gfid, token })
        .catch(bestEffort('migAbort', c.log));
    }
    if (codeOf(e) === 'ENOSPC') return { result: 'skipped', reason: `no space on ${dst}` };
    throw e instanceof FsError ? e : new FsError(codeOf(e), (e as Error)?.message);
  } finally {
    switchOn(false);
    ended = true;
    (renewer as Timer | null)?.cancel();
    if (srcFd) await c.fdCall(srcFd, 'close', {}).catch(bestEffort('close', c.log));
    if (dstFd) await c.fdCall(dstFd, 'close', {}).catch(bestEffort('close', c.log));
  }
}
