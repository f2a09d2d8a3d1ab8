/**
 * Reused buffers for bulk data on the brick side: a write request's bytes (the frame's attachment) and
 * a read reply's bytes. Fresh multi-megabyte buffers cost more than the copies themselves (the kernel
 * maps and zeroes new pages for every one), so the server takes them from here and gives them back
 * when it is done: a request's data once its handler has finished, a reply's data once the transport
 * has sent it. Only memory, no IO. A buffer not given back is simply collected.
 */
const MIN_POOLED = 64 * 1024;
const MAX_POOLED = 16 * 1024 * 1024;
/** At most this many bytes wait in the free lists. */
const MAX_IDLE_BYTES = 64 * 1024 * 1024;

function sizeClass(n: number): number {
  let c = MIN_POOLED;
  while (c < n) c *= 2;
  return c;
}

export class BufferPool {
  private readonly free = new Map<number, ArrayBuffer[]>();
  private readonly owned = new WeakSet<ArrayBuffer>();
  private idle = 0;

  /** A buffer of exactly `n` bytes (a view of a pooled block when `n` is large enough to be worth it). */
  take(n: number): Buffer {
    if (n < MIN_POOLED || n > MAX_POOLED) return Buffer.allocUnsafe(n);
    const c = sizeClass(n);
    const list = this.free.get(c);
    const ab = list?.pop();
    if (ab) {
      this.idle -= c;
      return Buffer.from(ab, 0, n);
    }
    const fresh = new ArrayBuffer(c);
    this.owned.add(fresh);
    return Buffer.from(fresh, 0, n);
  }

  /** Gives back a buffer from take() (any view of it); anything else is ignored. Never give one twice. */
  give(b: Uint8Array | null | undefined): void {
    if (!b) return;
    const ab = b.buffer as ArrayBuffer;
    if (!this.owned.has(ab)) return;
    const c = ab.byteLength;
    if (this.idle + c > MAX_IDLE_BYTES) return;
    let list = this.free.get(c);
    if (!list) this.free.set(c, (list = []));
    if (list.includes(ab)) throw new Error('BufferPool: buffer given back twice');
    list.push(ab);
    this.idle += c;
  }

  /** Whether `b` is a view of a pooled block. */
  owns(b: unknown): b is Uint8Array {
    return b instanceof Uint8Array && this.owned.has(b.buffer as ArrayBuffer);
  }
}

/** The process's pool for brick-side bulk data (the brick server and its request handler share it). */
export const ioBuffers = new BufferPool();
