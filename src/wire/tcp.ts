/** The real transport: TCP sockets (edge code; the only file of the wire that touches `net`). */
import net from 'node:net';
import type { Conn, Listener, Network } from './transport.js';

/**
 * Sockets read into one reused buffer of this size (net's `onread`), or straight into a landing zone
 * the frame decoder names: far fewer, larger reads than the default 64 KiB 'data' chunks, and bulk
 * data copied once, from the kernel to where it is used.
 */
const READ_BUFFER = 4 * 1024 * 1024;

type DataFn = (chunk: Buffer) => void;

export interface SocketReads {
  fns: DataFn[];
  landing: (() => Uint8Array | null) | null;
}

/** A connected socket as a Conn (also a TLS socket: ./tls.ts). */
export function wrap(sock: net.Socket, reads: SocketReads | null = null): Conn {
  sock.setNoDelay(true);
  let closed = false;
  let closeReason: string | undefined;
  const closeFns: ((r?: string) => void)[] = [];
  // Frames written in one turn of the event loop leave in one writev: the requests (or replies) that
  // the same burst of input caused share a system call and a loopback packet instead of one each.
  let corked = false;
  const uncork = () => {
    corked = false;
    sock.uncork();
  };
  sock.on('error', (e) => {
    closeReason ??= e.message;
  });
  sock.on('close', () => {
    closed = true;
    for (const f of closeFns) f(closeReason);
  });
  return {
    remote: `${sock.remoteAddress}:${sock.remotePort}`,
    write: (bufs, onSent) => {
      if (closed) return false;
      if (!corked) {
        corked = true;
        sock.cork();
        setImmediate(uncork);
      }
      // A loop, and a callback only for the last buffer when one is asked for: this runs for every reply.
      const last = bufs.length - 1;
      let ok = true;
      for (let i = 0; i < last; i++) ok = sock.write(bufs[i]) && ok;
      return sock.write(bufs[last], onSent ? (e?: Error | null) => void (e ? undefined : onSent()) : undefined) && ok;
    },
    onData: (fn) => {
      if (reads) reads.fns.push(fn);
      else sock.on('data', fn);
    },
    ...(reads ? { landing: (fn: () => Uint8Array | null) => void (reads.landing = fn) } : {}),
    pause: () => void sock.pause(),
    resume: () => void sock.resume(),
    onClose: (fn) => {
      if (closed) fn(closeReason);
      else closeFns.push(fn);
    },
    close: (reason, flush) => {
      closeReason ??= reason;
      if (!flush || closed) {
        sock.destroy();
        return;
      }
      if (corked) uncork();
      sock.end();
      setTimeout(() => sock.destroy(), 1000).unref();
    },
  };
}

/** net's `onread` option: reads into the reader's landing zone or one reused buffer. */
function onreadFor(reads: SocketReads): net.OnReadOpts {
  const own = Buffer.allocUnsafe(READ_BUFFER);
  return {
    // Asked after every read: the next bytes go where the reader wants them, or to our buffer.
    buffer: () => reads.landing?.() ?? own,
    callback: (n: number, buf: Uint8Array) => {
      const chunk = Buffer.from(buf.buffer, buf.byteOffset, n);
      for (const f of reads.fns) f(chunk);
      return true;
    },
  };
}

/**
 * An accepted socket, re-wrapped so that it reads through `onread` like a client socket (net gives
 * accepted sockets no such option): the paused socket's handle moves to a new Socket. Node's `handle`
 * option is not documented, so if this Node does not take it, the accepted socket is used as it is.
 */
function adopt(s: net.Socket): { sock: net.Socket; reads: SocketReads | null } {
  const handle = (s as unknown as { _handle?: unknown })._handle;
  if (!handle) return { sock: s, reads: null };
  const reads: SocketReads = { fns: [], landing: null };
  try {
    const t = new net.Socket({ handle, onread: onreadFor(reads), readable: true, writable: true } as net.SocketConstructorOpts);
    if ((t as unknown as { _handle?: unknown })._handle !== handle) throw new Error('handle not taken');
    (s as unknown as { _handle: unknown })._handle = null;
    s.destroy();
    t.resume();
    return { sock: t, reads };
  } catch {
    s.resume();
    return { sock: s, reads: null };
  }
}

export const tcpNetwork: Network = {
  connect(host, port) {
    return new Promise((resolve, reject) => {
      const reads: SocketReads = { fns: [], landing: null };
      const s = net.connect({ host, port, onread: onreadFor(reads) });
      const onErr = (e: Error) => reject(Object.assign(new Error(`connect ${host}:${port}: ${e.message}`), { code: 'ENOTCONN' }));
      s.once('error', onErr);
      s.once('connect', () => {
        s.off('error', onErr);
        resolve(wrap(s, reads));
      });
    });
  },
  listen(host, port, onConn) {
    return new Promise((resolve, reject) => {
      const srv = net.createServer({ pauseOnConnect: true }, (s) => {
        const { sock, reads } = adopt(s);
        onConn(wrap(sock, reads));
      });
      srv.once('error', reject);
      srv.listen({ host, port }, () => {
        const addr = srv.address() as net.AddressInfo;
        const l: Listener = {
          port: addr.port,
          close: () => new Promise((r) => srv.close(() => r())),
        };
        resolve(l);
      });
    });
  },
};
