/**
 * The migrator's copying (steps `copy`, `recopy` and `final-copy` of src/migration/migrator.ts): ranges of
 * src's file into dst's private copy, pipelined, straight from src's disk where both bricks share a host;
 * the data segments of a sparse file; and the gate that holds bulk copying while a file switches.
 */
import type { Reply } from '../wire/ops.js';
import { ignoreCodes } from '../common/errors.js';
import type { BrickFd, DhtClient } from '../dht/client.js';

/**
 * How dst gets src's bytes without the migrator relaying them, while that works: `source`, src's file as
 * dst may read it from the disk they share (migSource); else `remote`, src brick's name and the lease's
 * token, for dst to read the file from src over the brick path (migFetch, between hosts).
 */
export interface Pull {
  source: Reply<'migSource'>['source'];
  remote: { from: string; token: string } | null;
}

export interface CopyOptions {
  /** Bytes per copy request. */
  chunk: number;
  /** Copy requests in flight. */
  window: number;
  /** Shared by the migrations of one rebalancer (below). */
  gate?: SwitchGate;
  /** Counts copied bytes as they go (progress). */
  onBytes?: (n: number) => void;
}

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

/**
 * Copies ranges of src to the temp file on dst, pipelined: dst reads them from src's disk itself when the
 * two bricks share a host, or from src over the brick path (`pull`); otherwise (or when those fail) they
 * come through the migrator's fd on src. `bulk` copies
 * (before the freeze) hold while another file switches.
 */
export async function copyRanges(c: DhtClient, srcFd: BrickFd, dstFd: BrickFd, ranges: [number, number][], o: CopyOptions, bulk: boolean, pull: Pull, again = true): Promise<number> {
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
    if (!pull.source && pull.remote) {
      try {
        return (await c.fdCall(dstFd, 'migFetch', { ...pull.remote, offset: a, length: b - a })).copied;
      } catch (e) {
        // dst cannot reach src (no route between them, an older brick, no topology there): through here.
        ignoreCodes(e, 'EXDEV', 'ENOSYS', 'ENOTCONN');
        pull.remote = null;
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
export async function dataSegments(c: DhtClient, src: string, gfid: string, token: string, size: number): Promise<[number, number][]> {
  const out: [number, number][] = [];
  for (let offset: number | null = 0; offset !== null && offset < size;) {
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

export const total = (rs: [number, number][]) => rs.reduce((s, [a, b]) => s + (b - a), 0);
