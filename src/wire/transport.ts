/**
 * The byte-stream transport that the wire protocol runs over: real TCP in the product (./tcp.ts), a
 * simulated network in tests. Deliberately narrow.
 */
export interface Conn {
  /**
   * Queue buffers, sent in order as one unit; false when the peer is slow (back-pressure). `onSent` is
   * called once the transport no longer needs the buffers (never, if the connection ends first).
   */
  write(data: Uint8Array[], onSent?: () => void): boolean;
  /** Received bytes, in order. A chunk is only valid during the call: the transport may reuse it. */
  onData(fn: (chunk: Buffer) => void): void;
  /**
   * Optional: before each read the transport asks where the bytes should go (null: its own buffer); a
   * chunk given to onData is then a view of the buffer returned. Lets a reader receive bulk data in
   * place, without a copy.
   */
  landing?(fn: () => Uint8Array | null): void;
  /**
   * Optional: stop and restart reading (the receiver's flow control: bytes the peer sends meanwhile
   * wait in the kernel, and the peer's sends block once its window is full).
   */
  pause?(): void;
  resume?(): void;
  /** Called exactly once, however the connection ended. */
  onClose(fn: (reason?: string) => void): void;
  /** With `flush`, what was written is sent first (for at most a second) before the connection ends. */
  close(reason?: string, flush?: boolean): void;
  readonly remote: string;
  /** TLS server side: the common name of the client's certificate (verified against the CA). */
  readonly peerName?: string;
  /** TLS server side: its organizational unit (`node` for the pool's node daemons and their bricks, `client`). */
  readonly peerUnit?: string;
}

export interface Listener {
  readonly port: number;
  close(): Promise<void>;
}

export interface Network {
  connect(host: string, port: number): Promise<Conn>;
  listen(host: string, port: number, onConn: (c: Conn) => void): Promise<Listener>;
}
