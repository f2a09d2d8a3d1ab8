/**
 * Local reads and writes on the simulator's disks: the LocalFiles a client on the bricks' host is given
 * (the real one uses this host's disks, storage/disk.ts). FileHandle's own code opens the brick's file,
 * reads it and checks it for a commit record, and writes it under the gate and writers' lock
 * (docs/MIGRATION.md, "Local reads", "Local writes"), so the checker sees those steps interleave with
 * migrations, crashes and restarts. Half of the opens are refused, so that reads also go
 * through the bricks.
 */
import { gfidToBytes } from '../common/gfid.js';
import type { LocalFile, LocalFiles } from '../storage/storage.js';
import { O_RDONLY, O_RDWR } from '../storage/storage.js';
import type { SimStorage } from './storage.js';

export interface LocalCounts {
  /** Reads made from a brick's file. */
  reads: number;
  /** Writes made to a brick's file. */
  writes: number;
  /** Checks that found a commit record (the read then went through the brick). */
  recorded: number;
}

export function simLocalFiles(host: string, storages: Map<string, SimStorage>, chance: () => boolean, counts: LocalCounts): LocalFiles {
  return {
    async open(src, gfid, writable) {
      if (!src.source || src.source.host !== host || !chance()) return null;
      const st = storages.get(src.source.root);
      if (!st) return null;
      let h: number;
      try {
        h = st.openLocal(src.source.path, writable ? O_RDWR : O_RDONLY);
      } catch {
        return null;
      }
      const g = st.fgetxattr(h, src.gfidXattr);
      if (st.fstat(h).ino !== src.ino || !g || !g.equals(gfidToBytes(gfid))) {
        st.close(h);
        return null;
      }
      return new SimLocalFile(st, h, src.recordXattr, counts, writable);
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
    private readonly writable: boolean,
  ) {}

  async read(into: Uint8Array, length: number, position: number): Promise<number> {
    if (this.closed) throw new Error('closed');
    // A power loss closes the storage's descriptors: the read then fails, and goes through the brick.
    const data = await this.st.read(this.h, position, length);
    into.set(data);
    this.counts.reads++;
    return data.length;
  }

  async write(data: Uint8Array, length: number, position: number): Promise<number> {
    if (this.closed || !this.writable) throw new Error('not open for writing');
    const n = await this.st.write(this.h, position, data.subarray(0, length));
    this.counts.writes++;
    return n;
  }

  lock(byte: number, mode: 'unlock' | 'shared' | 'exclusive'): boolean {
    if (this.closed) return mode === 'unlock';
    if (!this.writable) return false;
    try {
      return this.st.lock(this.h, byte, mode);
    } catch {
      return mode === 'unlock'; // gone with a power loss, and its locks with it
    }
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

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    try {
      this.st.close(this.h);
    } catch {
      /* gone with a power loss */
    }
    return Promise.resolve();
  }
}
