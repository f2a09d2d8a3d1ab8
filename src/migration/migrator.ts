/**
 * The migrator's half of the safe migration protocol (docs/MIGRATION.md): moves one file from the brick
 * that holds it (src) to its hashed brick (dst), step by step, in the order of SAFE_STEPS; migrateFile
 * reads top to bottom as the protocol does. The bricks' half is src's rules (src-state.ts), dst's rules
 * (dst-rules.ts) and the storage work of each step at a brick (src/brick/ops/mig-src.ts, mig-dst.ts);
 * the copying is in copy.ts.
 */
import { EMOVED, FsError, codeOf, ignoreCodes, bestEffort, nullOnFailure } from '../common/errors.js';
import type { Timer } from '../common/env.js';
import type { BrickFd, DhtClient, Located } from '../dht/client.js';
import { supersededInstall } from './records.js';
import type { Attr } from '../wire/types.js';
import { S_IFMT, S_IFREG, O_RDONLY } from '../storage/storage.js';
import type { SafeStep } from './steps.js';
import { SwitchGate, copyRanges, dataSegments, total, type Pull } from './copy.js';

export { SwitchGate };

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
  /**
   * Let dst read src's file itself (default true): from its disk when both bricks are on one host, from
   * src over the brick path otherwise; false: every byte through the migrator.
   */
  pull?: boolean;
  /**
   * A file with several names: all of them (volume paths, `path` among them). The data moves once, to
   * `dst`; install gives every name its place there, and each name's hashed brick a linkto to it.
   */
  links?: string[];
  /** The brick to move to (default: the name's hashed brick). */
  dst?: string;
}

export type MigrateOutcome = { result: 'migrated'; bytes: number; src: string; dst: string } | { result: 'nothing'; reason: string } | { result: 'skipped'; reason: string };

/** How long a migration's lease on its source brick lasts without renewal, by default. */
export const MIGRATION_LEASE_MS = 5000;

const DEFAULTS = { leaseMs: MIGRATION_LEASE_MS, chunk: 2 * 1024 * 1024, window: 4, settleBytes: 256 * 1024, maxRecopyRounds: 8 };

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
  const o: Options = { ...DEFAULTS, ...given };
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
  const m: Migration = { c, o, path, src, dst, gfid, token: lease.token, owner: lease.attr, links, srcFd: null, dstFd: null, switching: false };
  const renewer = keepLease(m);
  let committed = false;
  try {
    await step(m, 'lease');

    // prepare-dst: a linkto to src at the name on dst, and a private temp file for this token.
    const prepared = await c.sv(dst).call('migPrepare', { path, gfid, src, token: m.token, uid: m.owner.uid, gid: m.owner.gid, links });
    const dstFd = (m.dstFd = c.fdOn(dst, prepared.fd));
    await step(m, 'prepare-dst');

    // copy: only the data (src's holes stay holes in the copy, sized by migFinalize's ftruncate), read by
    // dst from src's disk where the two bricks share a host, from src over the brick path where they do
    // not, or through the migrator's own fd on src (what clients change meanwhile is tracked by src all
    // the same).
    const srcFd = (m.srcFd = c.fdOn(src, (await c.sv(src).call('open', { gfid, flags: O_RDONLY })).fd));
    const pull: Pull = { source: null, remote: o.pull !== false ? { from: src, token: m.token } : null };
    if (o.pull !== false)
      pull.source = await c
        .sv(src)
        .call('migSource', { gfid, token: m.token })
        .then(
          (r) => r.source,
          () => null,
        );
    let bytes = await copyRanges(c, srcFd, dstFd, await dataSegments(c, src, gfid, m.token, m.owner.size), o, true, pull, false);
    await step(m, 'copy');

    // recopy: what clients changed meanwhile, until little is left.
    bytes += await recopy(m, pull, bytes);
    await step(m, 'recopy');

    // freeze: src holds changes; the last ranges and the attributes. (Not while other migrations' bulk
    // work begun before this switch still runs: the switch's fsyncs would wait for its writeback.)
    switchOn(m, true);
    await o.gate?.quiet();
    const fr = await c.sv(src).call('migFreeze', { gfid, token: m.token });
    await step(m, 'freeze');

    // final-copy: the last ranges, size, attributes, xattrs; the copy made durable.
    bytes += await copyRanges(c, srcFd, dstFd, fr.dirty.ranges, o, false, pull);
    const a = fr.attr;
    await c.fdCall(dstFd, 'migFinalize', { size: a.size, mode: a.mode & 0o7777, uid: a.uid, gid: a.gid, atime: a.atime, mtime: a.mtime, xattrs: fr.xattrs });
    await step(m, 'final-copy');

    // commit: src records "moved to dst" under the lease. From here on, dst's copy is the file.
    await c.sv(src).call('migCommit', { gfid, token: m.token });
    committed = true;
    await step(m, 'commit');

    // install: the copy replaces the linkto at the name on dst. A client may have renamed another file
    // over the name, or renamed or unlinked this one, since the commit: then the copy is not the file's
    // any more, and the commit record goes with the old copy.
    const superseded = await install(m);
    switchOn(m, false);
    await step(m, 'install');
    await linkOtherNames(m);

    // cleanup: src's old copy goes (unless a client that met the commit record removed it already),
    // under every name it has.
    await cleanup(m);
    await step(m, 'cleanup');

    // release: the lease ended with the commit; close what the migrator opened (below).
    await step(m, 'release');
    if (superseded) return { result: 'skipped', reason: 'renamed over, renamed or unlinked while it was migrated' };
    return { result: 'migrated', bytes, src, dst };
  } catch (e) {
    if (!committed) await c.sv(src).call('migAbort', { gfid, token: m.token }).catch(bestEffort('migAbort', c.log));
    if (codeOf(e) === 'ENOSPC') return { result: 'skipped', reason: `no space on ${dst}` };
    throw e instanceof FsError ? e : new FsError(codeOf(e), (e as Error)?.message);
  } finally {
    switchOn(m, false);
    renewer.stop();
    if (m.srcFd) await c.fdCall(m.srcFd, 'close', {}).catch(bestEffort('close', c.log));
    if (m.dstFd) await c.fdCall(m.dstFd, 'close', {}).catch(bestEffort('close', c.log));
  }
}

type Options = typeof DEFAULTS & MigrateOptions;

/** One migration under way: what its steps share. */
interface Migration {
  c: DhtClient;
  o: Options;
  path: string;
  src: string;
  dst: string;
  gfid: string;
  token: string;
  /** The file's attributes at the lease (owner and size). */
  owner: Attr;
  links: string[] | undefined;
  /**
   * The migrator's fds, each bound to its connection: after a reconnect, their numbers may name other
   * files (another migration's copy), so a call on them is refused and the migration aborts.
   */
  srcFd: BrickFd | null;
  dstFd: BrickFd | null;
  /** Whether this file holds the rebalancer's switch gate (from the freeze, or the second recopy round, to install). */
  switching: boolean;
}

async function step(m: Migration, s: SafeStep): Promise<void> {
  await m.o.afterStep?.(s, m.path);
}

/** Renews the lease at a third of its length until stopped. */
function keepLease(m: Migration): { stop(): void } {
  let timer: Timer | null = null;
  let ended = false;
  const renew = () => {
    if (ended) return;
    timer = m.c.clock.setTimer(m.o.leaseMs / 3, () => {
      m.c
        .sv(m.src)
        .call('migRenew', { gfid: m.gfid, token: m.token, leaseMs: m.o.leaseMs })
        .then(renew, () => {});
    });
  };
  renew();
  return {
    stop() {
      ended = true;
      (timer as Timer | null)?.cancel();
    },
  };
}

function switchOn(m: Migration, on: boolean): void {
  if (on === m.switching) return;
  m.switching = on;
  if (on) m.o.gate?.enter();
  else m.o.gate?.leave();
}

/**
 * step `recopy`: what clients changed since the lease, in rounds, until little is left. Each round ends
 * with the copy (and src) made durable, so what the freeze still has to copy and fsync is only what
 * clients wrote during the last round: the switch's pause is short, however large the file. From the
 * second round on, the file is switching: its rounds are small, and other migrations hold their bulk
 * copying meanwhile so that these fsyncs and the freeze's wait on nothing but this file. A small file
 * (`copied` below settleBytes) goes straight to the freeze, which hands over all that clients changed
 * since the lease: copying and syncing that much is quick, and the rounds (each with two fsyncs) exist
 * only to keep a large file's switch short. Returns the bytes copied.
 */
async function recopy(m: Migration, pull: Pull, copied: number): Promise<number> {
  const { c, o } = m;
  const [sF, dF] = [m.srcFd!, m.dstFd!];
  let bytes = 0;
  const rounds = copied <= o.settleBytes ? 0 : o.maxRecopyRounds;
  for (let round = 0; round < rounds; round++) {
    const d = await c.sv(m.src).call('migDirty', { gfid: m.gfid, token: m.token });
    if (round === 1) switchOn(m, true);
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
  return bytes;
}

/** step `install` at dst; true when the copy can never be installed (superseded, see above). */
function install(m: Migration): Promise<boolean> {
  return m.c
    .sv(m.dst)
    .call('migInstall', { path: m.path, gfid: m.gfid, token: m.token, durable: true })
    .then(
      () => false,
      (e) => {
        if (!supersededInstall(e)) throw e;
        return true;
      },
    );
}

/** After install, the file's other names: each one's hashed brick gets a linkto to dst (it had one to src). */
async function linkOtherNames(m: Migration): Promise<void> {
  const { c, gfid, dst } = m;
  for (const name of m.links ?? []) {
    const hashed = await c.hashedOf(name).catch(nullOnFailure('hashedOf', c.log));
    if (!hashed || hashed === dst) continue;
    const there = await c.sv(hashed).call('lookup', { path: name }).catch(nullOnFailure('lookup', c.log));
    if (there && (there.linkto === undefined || there.gfid !== gfid)) continue; // another file now
    if (there?.linkto === dst) continue;
    await c.sv(hashed).call('mklinkto', { path: name, gfid, target: dst, uid: m.owner.uid, gid: m.owner.gid, keepTimes: true, replace: !!there }).catch(bestEffort('mklinkto', c.log)); // a lookup repairs it
  }
}

/** step `cleanup`: src's old copy under each of its names (one a client removed already is fine). */
async function cleanup(m: Migration): Promise<void> {
  for (const name of m.links ?? [m.path]) {
    await m.c
      .sv(m.src)
      .call('migCleanup', { path: name, gfid: m.gfid })
      .catch((e) => {
        ignoreCodes(e, 'ENOENT', 'ESTALE');
      });
  }
}
