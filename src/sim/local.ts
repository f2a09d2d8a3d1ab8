/**
 * Local reads on the simulator's disks: the LocalFiles a client on the bricks' host is given (the real
 * one reads this host's disks, storage/disk.ts). FileHandle's own code opens the brick's file, reads it
 * and checks it for a commit record (docs/MIGRATION.md, "Local reads"), so the checker sees those steps
 * interleave with migrations, crashes and restarts. Half of the opens are refused, so that reads also go
 * through the bricks.
 */
import { gfidToBytes } from '../common/gfid.js';
import type { LocalFile, LocalFiles } from '../storage/storage.js';
import { O_RDONLY } from '../storage/storage.js';
import type { SimStorage } from './storage.js';

export interface LocalCounts {
  /** Reads made from a brick's file. */
  reads: number;
  /** Checks that found a commit record (the read then went through the brick). */
  recorded: number;
}

export function simLocalFiles(host: string, storages: Map<string, SimStorage>, chance: () => boolean, counts: LocalCounts): LocalFiles {
  return {
    async open(src, gfid) {
      if (!src.source || src.source.host !== host || !chance()) return null;
      const st = storages.get(src.source.root);
      if (!st) return null;
      let h: number;
      try {
        h = st.open(src.source.path, O_RDONLY, 0);
      } catch {
        return null;
      }
      const g = st.fgetxattr(h, src.gfidXattr);
      if (st.fstat(h).ino !== src.ino || !g || !g.equals(gfidToBytes(gfid))) {
        st.close(h);
        return null;
      }
      return new SimLocalFile(st, h, src.recordXattr, counts);
    },
  };
}

class SimLocalFile implements LocalFile {
  private closed = false;
  constructor(
    private readonly st: SimStorage,
    private readonly h: number,
    private readonly record: string,
    private readonly counts: LocalCounts,
  ) {}

  async read(into: Uint8Array, length: number, position: number): Promise<number> {
    if (this.closed) throw new Error('closed');
    // A power loss closes the storage's descriptors: the read then fails, and goes through the brick.
    const data = await this.st.read(this.h, position, length);
    into.set(data);
    this.counts.reads++;
    return data.length;
  }

  recorded(): boolean {
    let r = true;
    try {
      r = this.closed || this.st.fgetxattr(this.h, this.record) !== null;
    } catch {
      r = true;
    }
    if (r) this.counts.recorded++;
    return r;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.st.close(this.h);
    } catch {
      /* gone with a power loss */
    }
  }
}
