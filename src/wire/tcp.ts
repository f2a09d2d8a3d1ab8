/** The real transport: TCP sockets (edge code; the only file of the wire that touches `net`). */
import net from 'node:net';
import type { Conn, Listener, Network } from './transport.js';

function wrap(sock: net.Socket): Conn {
  sock.setNoDelay(true);
  let closed = false;
  let closeReason: string | undefined;
  const closeFns: ((r?: string) => void)[] = [];
  sock.on('error', (e) => {
    closeReason ??= e.message;
  });
  sock.on('close', () => {
    closed = true;
    for (const f of closeFns) f(closeReason);
  });
  return {
    remote: `${sock.remoteAddress}:${sock.remotePort}`,
    write: (bufs) => {
      if (closed) return false;
      if (bufs.length === 1) return sock.write(bufs[0]);
      sock.cork();
      let ok = true;
      for (const b of bufs) ok = sock.write(b) && ok;
      sock.uncork();
      return ok;
    },
    onData: (fn) => void sock.on('data', fn),
    onClose: (fn) => {
      if (closed) fn(closeReason);
      else closeFns.push(fn);
    },
    close: (reason) => {
      closeReason ??= reason;
      sock.destroy();
    },
  };
}

export const tcpNetwork: Network = {
  connect(host, port) {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host, port });
      const onErr = (e: Error) => reject(Object.assign(new Error(`connect ${host}:${port}: ${e.message}`), { code: 'ENOTCONN' }));
      s.once('error', onErr);
      s.once('connect', () => {
        s.off('error', onErr);
        resolve(wrap(s));
      });
    });
  },
  listen(host, port, onConn) {
    return new Promise((resolve, reject) => {
      const srv = net.createServer((s) => onConn(wrap(s)));
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
