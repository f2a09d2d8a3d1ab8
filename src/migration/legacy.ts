/**
 * GlusterFS's file migration order (dht_migrate_file, shared/reference/glusterfs-dht.md §3.3), selectable
 * with `--migration-protocol legacy` so that its stale read (gluster#963) can be shown on the real system.
 * Not safe: see docs/MIGRATION.md and model/legacy.pml. Clients must use the legacy client rules
 * (volume option migrationProtocol: 'legacy').
 */
import { bestEffort } from '../common/errors.js';
import type { DhtClient } from '../dht/client.js';
import { O_RDONLY, O_RDWR, S_ISGID, S_ISVTX } from '../storage/storage.js';
import type { LegacyStep } from './steps.js';
import { migrationTarget, type MigrateOutcome } from './migrator.js';

export interface LegacyOptions {
  afterStep?: (step: LegacyStep, path: string) => Promise<void> | void;
  chunk?: number;
  onBytes?: (n: number) => void;
}

export async function migrateFileLegacy(c: DhtClient, path: string, o: LegacyOptions = {}): Promise<MigrateOutcome> {
  const step = async (s: LegacyStep) => {
    await o.afterStep?.(s, path);
  };
  const chunk = o.chunk ?? 1024 * 1024;
  const target = await migrationTarget(c, path);
  if ('result' in target) return target;
  const { loc, src, dst, gfid } = target;
  const mode = loc.attr.mode & 0o7777;
  const size = loc.attr.size;

  // create-dst: dst is a linkto to src (mode 01000, linkto xattr), full size.
  await c
    .sv(dst)
    .call('mklinkto', { path, gfid, target: src, uid: loc.attr.uid, gid: loc.attr.gid })
    .catch((e) => {
      if ((e as { code?: string }).code !== 'EEXIST') throw e;
    });
  // fds bound to their connections (see Subvol.call): a reconnect aborts the migration.
  const dstFd = c.fdOn(dst, (await c.sv(dst).call('open', { path, flags: O_RDWR })).fd);
  await c.fdCall(dstFd, 'ftruncate', { size });
  await step('create-dst');

  // phase1: src gets the linkto xattr to dst and mode M|S|T: clients mirror their writes to dst.
  await c.sv(src).call('legacySetLinkto', { path, target: dst });
  await c.sv(src).call('setattr', { path, mode: mode | S_ISGID | S_ISVTX });
  await step('phase1');

  // copy
  const srcFd = c.fdOn(src, (await c.sv(src).call('open', { path, flags: O_RDONLY })).fd);
  let bytes = 0;
  for (let off = 0; off < size; off += chunk) {
    const r = await c.fdCall(srcFd, 'read', { offset: off, length: Math.min(chunk, size - off) });
    if (r.data.length === 0) break;
    await c.fdCall(dstFd, 'write', { offset: off, data: r.data });
    bytes += r.data.length;
    o.onBytes?.(r.data.length);
  }
  await c.fdCall(dstFd, 'fsync', {});
  await step('copy');

  // dst-data: dst gets the user's mode: now two data files exist (the race window opens).
  const st = await c.fdCall(srcFd, 'fstat', {});
  await c.fdCall(dstFd, 'setattr', { mode, uid: st.uid, gid: st.gid });
  await step('dst-data');

  // src-linkto: src becomes a linkto by mode (phase 2; the window closes).
  await c.sv(src).call('setattr', { path, mode: S_ISVTX });
  await step('src-linkto');

  await c.sv(src).call('setattr', { path, size: 0 });
  await step('truncate-src');

  await c.sv(dst).call('legacySetLinkto', { path, target: null });
  await step('dst-remove-linkto');

  await c.sv(src).call('unlink', { path, gfid });
  await step('unlink-src');
  await c.fdCall(srcFd, 'close', {}).catch(bestEffort('close', c.log));
  await c.fdCall(dstFd, 'close', {}).catch(bestEffort('close', c.log));
  return { result: 'migrated', bytes, src, dst };
}
