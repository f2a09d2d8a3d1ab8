/**
 * S3 checker (one truth): at every instant at most one copy of a regular file is authoritative. Run after
 * every simulated event whose disks changed (each SimStorage counts its changes): over every brick's
 * namespace (the handle and private directories left out), a data file that is not a linkto and carries no
 * commit record is an authoritative copy of its gfid; two bricks holding one for the same gfid is a
 * violation. Names of one inode on one brick (hard links) are one copy; symlinks, FIFOs and sockets may
 * have two identical copies while they move (docs/MIGRATION.md, "Special files"), and are left out.
 */
import { S_IFMT, S_IFREG } from '../../storage/storage.js';
import type { SimStorage } from '../storage.js';
import { DiskChanges, GFID, LINKTO, RECORD } from './disk.js';

export class S3Checker {
  private changes: DiskChanges;
  /** Violations found, once per gfid. */
  readonly found = new Map<string, string>();
  checks = 0;
  /** Each disk's authoritative copies (gfid, path) in the order of its walk, as of its generation. */
  private copies: { st: SimStorage; generation: number; list: [string, string][] }[] = [];

  constructor(
    private readonly storages: SimStorage[],
    private readonly names: string[],
  ) {
    this.changes = new DiskChanges(storages);
  }

  /** Checks, if any disk changed since the last check; `now` names the instant in the report. Only the disks that changed are walked again. */
  check(now: number): void {
    if (!this.changes.any()) return;
    this.checks++;
    const holder = new Map<string, number>();
    this.storages.forEach((st, i) => {
      for (const [gfid, p] of this.copiesOn(st, i)) {
        const other = holder.get(gfid);
        if (other === undefined) holder.set(gfid, i);
        else if (other !== i && !this.found.has(gfid)) this.found.set(gfid, `S3 at ${now.toFixed(2)}: /${p} has an authoritative copy on ${this.names[other]} and on ${this.names[i]}`);
      }
    });
  }

  /** The authoritative copies on disk `i`: data files that are neither linktos nor carry a commit record. */
  private copiesOn(st: SimStorage, i: number): [string, string][] {
    const c = this.copies[i];
    if (c && c.st === st && c.generation === st.generation) return c.list;
    const list: [string, string][] = [];
    st.peekFiles((p, mode, x) => {
      if ((mode & S_IFMT) !== S_IFREG) return;
      if ((mode & 0o7777) === 0o1000 && x.get(LINKTO)) return;
      if (x.get(RECORD)) return;
      const g = x.get(GFID);
      if (g) list.push([g.toString('hex'), p]);
    });
    this.copies[i] = { st, generation: st.generation, list };
    return list;
  }
}
