/**
 * The FUSE mount's local reads (src/fuse/mount.ts and native/fuse.c; docs/MIGRATION.md, "Local reads")
 * on the simulator's disks: a reader on the bricks' host that has read a handle through its brick opens
 * the very inode that brick reads for it, then reads that inode itself and checks afterwards, on the
 * same inode, that it carries no commit record; with a record (or a descriptor a power loss took) the
 * read goes through the brick, and the handle's new place is opened instead. The same steps in the same
 * order as the mount, so that the checker sees them interleave with migrations, crashes and restarts.
 */
import type { FileHandle } from '../api/volume.js';
import { gfidToBytes } from '../common/gfid.js';
import { planted } from '../common/plant.js';
import { O_RDONLY } from '../storage/storage.js';
import type { SimStorage } from './storage.js';

interface Held {
  /** FileHandle.at() when it was opened: the handle's place. */
  at: string;
  /** null while being opened, or when the place cannot be read here. */
  file: { st: SimStorage; h: number; record: string } | null;
}

export class SimLocalReads {
  private held = new Map<FileHandle, Held>();
  /** Reads answered from the brick's file, and ones a commit record sent through the brick. */
  readonly counts = { local: 0, moved: 0 };

  /** `storages`: the disks of the host, by their root (SimStorage.localName). */
  constructor(
    private readonly host: string,
    private readonly storages: Map<string, SimStorage>,
  ) {}

  /** Reads `length` bytes at `position` of `fh` into `buf`, locally where it can; returns the count. */
  async read(fh: FileHandle, buf: Buffer, length: number, position: number): Promise<number> {
    const f = this.held.get(fh)?.file;
    if (f) {
      try {
        const data = await f.st.read(f.h, position, length);
        if (!f.st.fgetxattr(f.h, f.record) || planted.has('local-read-ignores-record')) {
          buf.set(data);
          this.counts.local++;
          return data.length;
        }
        this.counts.moved++;
      } catch {
        /* the descriptor is gone (a power loss): through the brick */
      }
    }
    const { bytesRead } = await fh.read(buf, 0, length, position);
    void this.open(fh);
    return bytesRead;
  }

  /** As FuseMount.readLocally: once per place of the handle; any failure leaves reads on the brick. */
  private async open(fh: FileHandle): Promise<void> {
    const at = fh.at();
    const was = this.held.get(fh);
    if (was?.at === at) return;
    if (was) this.drop(was);
    const mine: Held = { at, file: null };
    this.held.set(fh, mine);
    try {
      const src = await fh.localSource();
      const gfid = fh.gfid;
      if (!src?.source || src.source.host !== this.host || src.at !== at || !gfid) return;
      const st = this.storages.get(src.source.root);
      if (!st) return;
      const h = st.open(src.source.path, O_RDONLY, 0);
      const same = st.fstat(h).ino === src.ino && Buffer.from(st.fgetxattr(h, src.gfidXattr) ?? []).equals(gfidToBytes(gfid));
      if (!same || fh.at() !== at || this.held.get(fh) !== mine) {
        st.close(h);
        return;
      }
      mine.file = { st, h, record: src.recordXattr };
    } catch {
      /* the reads go through the brick */
    }
  }

  private drop(x: Held): void {
    const f = x.file;
    x.file = null;
    try {
      f?.st.close(f.h);
    } catch {
      /* gone with a power loss */
    }
  }

  /** Closes every descriptor (the end of a run). */
  close(): void {
    for (const x of this.held.values()) this.drop(x);
    this.held.clear();
  }
}
