/**
 * A simulated network implementing the wire's Network interface: bytes arrive in order on a connection
 * (as on TCP) after a random delay, connections are independent of each other (so messages reorder
 * across them), and a host can be cut off (its connections break at once, in-flight bytes are lost).
 */
import { FsError } from '../common/errors.js';
import type { Conn, Listener, Network } from '../wire/transport.js';
import type { World } from './world.js';

interface End {
  conn: Conn;
  host: string;
  onData: ((c: Buffer) => void)[];
  onClose: ((r?: string) => void)[];
  closed: boolean;
  lastAt: number;
  peer: End | null;
}

export class SimNetwork implements Network {
  private listeners = new Map<string, (c: Conn) => void>();
  private ends = new Set<End>();
  private dead = new Set<string>();
  /** Upper bound of a message's delay, virtual ms. */
  maxDelay = 3;

  constructor(private readonly w: World) {}

  private end(host: string, remote: string): End {
    const e: End = {
      host,
      onData: [],
      onClose: [],
      closed: false,
      lastAt: 0,
      peer: null,
      conn: null as unknown as Conn,
    };
    e.conn = {
      remote,
      write: (bufs, onSent) => {
        if (e.closed || !e.peer) return false;
        const data = Buffer.concat(bufs); // a copy: the sender may reuse its buffers
        onSent?.();
        const peer = e.peer;
        // In order on this connection; independent of other connections.
        const at = Math.max(e.lastAt, this.w.now + 0.01 + this.w.rng.int(this.maxDelay * 100) / 100);
        e.lastAt = at;
        this.w.at(
          at - this.w.now,
          () => {
            if (!peer.closed) for (const f of peer.onData) f(data);
          },
          peer,
        );
        return true;
      },
      onData: (fn) => void e.onData.push(fn),
      onClose: (fn) => {
        if (e.closed) fn();
        else e.onClose.push(fn);
      },
      close: (reason) => this.closePair(e, reason, true),
    };
    this.ends.add(e);
    return e;
  }

  /** Closes both ends; a graceful close lets bytes already sent arrive first. */
  private closePair(e: End, reason: string | undefined, graceful: boolean): void {
    if (e.closed) return;
    const p = e.peer;
    this.shut(e, reason);
    if (p && !p.closed) {
      const at = graceful ? Math.max(e.lastAt, this.w.now) : this.w.now;
      this.w.at(at - this.w.now, () => this.shut(p, reason), graceful ? p : undefined);
    }
  }

  private shut(e: End, reason?: string): void {
    if (e.closed) return;
    e.closed = true;
    this.ends.delete(e);
    for (const f of e.onClose.splice(0)) f(reason);
  }

  /** The network as one client process sees it: its connections carry its name, so it can be cut. */
  as(name: string): Network {
    return {
      connect: (host, port) => this.connectAs(name, host, port),
      listen: (host, port, onConn) => this.listen(host, port, onConn),
    };
  }

  connect(host: string, port: number): Promise<Conn> {
    return this.connectAs('client', host, port);
  }

  private async connectAs(name: string, host: string, port: number): Promise<Conn> {
    await this.w.clock.sleep(0.01 + this.w.rng.int(100) / 100);
    if (this.dead.has(name)) throw new FsError('ENOTCONN', `${name} is dead`);
    const l = this.listeners.get(`${host}:${port}`);
    if (!l) throw new FsError('ECONNREFUSED', `nothing listens on ${host}:${port}`);
    const client = this.end(name, `${host}:${port}`);
    const server = this.end(host, 'client');
    client.peer = server;
    server.peer = client;
    l(server.conn);
    return client.conn;
  }

  async listen(host: string, port: number, onConn: (c: Conn) => void): Promise<Listener> {
    const key = `${host}:${port}`;
    if (this.listeners.has(key)) throw new FsError('EADDRINUSE', key);
    this.listeners.set(key, onConn);
    return { port, close: async () => void this.listeners.delete(key) };
  }

  /** A host dies or is cut off: every connection to or from it breaks now, in-flight bytes are lost. */
  cut(host: string): void {
    for (const e of [...this.ends]) if (e.host === host || e.peer?.host === host) this.closePair(e, `${host} cut off`, false);
  }

  /** A client process dies: its connections break and it never connects again. */
  kill(name: string): void {
    this.dead.add(name);
    this.cut(name);
  }

  /** Breaks one random connection (a network fault). */
  breakOne(): void {
    const all = [...this.ends];
    if (all.length) this.closePair(this.w.rng.pick(all), 'network fault', false);
  }
}
