/**
 * S4 at the disks (always a copy): at every instant each fixed file has an authoritative copy: a data
 * file under its name on some brick (a regular file that is neither a linkto nor carries a commit
 * record), or, between a commit and its install, the committed copy its commit record names (dst's
 * private copy of that token). S3 says at most one copy is authoritative; this says at least one is
 * there, whatever a client would see: a migration, a brick's restart or a power loss that left a fixed
 * file nowhere (or only behind a record whose copy is gone) is a violation the moment it happens. Run
 * after every event that changed a disk, from the end of the setup until the end of the run's checks
 * (a replace-brick then takes files away on purpose).
 */
import { S_IFMT, S_IFREG } from '../../storage/storage.js';
import { gfidFromBytes } from '../../common/gfid.js';
import { parseMoved } from '../../migration/records.js';
import type { SimStorage } from '../storage.js';
import { COPIES, DiskChanges, GFID, LINKTO, RECORD } from './disk.js';

export class PresenceChecker {
  private changes: DiskChanges;
  /** Violations found, once per file. */
  readonly found = new Map<string, string>();
  on = false;

  constructor(
    private readonly storages: SimStorage[],
    /** The fixed files' paths on a brick (`d/f0-123`). */
    private readonly paths: string[],
    private readonly names: string[],
  ) {
    this.changes = new DiskChanges(storages);
  }

  check(now: number): void {
    if (!this.on || !this.changes.any()) return;
    for (const p of this.paths) {
      if (this.found.has(p) || this.storages.some((st) => this.copyAt(st, p))) continue;
      this.found.set(p, `S4 at ${now.toFixed(2)}: /${p} has no authoritative copy on any brick`);
    }
  }

  /** Whether `st` holds p's authoritative copy, or a commit record whose committed copy is there. */
  private copyAt(st: SimStorage, p: string): boolean {
    const at = st.peekAt(p);
    if (at === null || (at.mode & S_IFMT) !== S_IFREG) return false;
    if ((at.mode & 0o7777) === 0o1000 && at.xattrs.get(LINKTO)) return false;
    const rec = at.xattrs.get(RECORD);
    if (!rec) return true;
    const m = parseMoved(rec);
    const g = at.xattrs.get(GFID);
    const dst = m ? this.names.indexOf(m.dst) : -1;
    if (!m || !g || g.length !== 16 || dst < 0) return false;
    return this.storages[dst].peekAt(`${COPIES}/${gfidFromBytes(g)}.${m.token}`) !== null;
  }
}
