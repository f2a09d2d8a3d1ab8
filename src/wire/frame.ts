/**
 * Frames: a 4-byte big-endian length L of the rest, a 4-byte length M of the msgpack body, the msgpack
 * body, then L-4-M bytes of raw attachment. Bulk data (the `data` field of a request's args or of a
 * reply's result) travels as the attachment, so it is never copied through msgpack. Messages:
 *   [0, id, op, args]          request
 *   [1, id, error|null, result] reply (error = { code, message })
 *   [2, kind, payload]          server event (the handshake challenge, later notifications)
 */
import { Packr } from 'msgpackr';

export const PROTOCOL_VERSION = 1;
/** Default largest frame body accepted; the largest read or write is a little smaller. */
export const DEFAULT_MAX_FRAME = 8 * 1024 * 1024 + 64 * 1024;
export const MAX_IO_SIZE = 8 * 1024 * 1024;

export const REQ = 0;
export const REPLY = 1;
export const EVENT = 2;

export interface WireError {
  code: string;
  message?: string;
  info?: Record<string, unknown>;
}

export type Message =
  | [typeof REQ, number, string, Record<string, unknown>]
  | [typeof REPLY, number, WireError | null, unknown]
  | [typeof EVENT, string, unknown];

const packr = new Packr({ useRecords: false, moreTypes: false, int64AsType: 'number' } as never);

/** Data fields at least this large travel as the frame's attachment. */
const ATTACH_MIN = 512;

/** Encodes a message as a frame: one or two buffers (header+body, then the attachment if any). */
export function encodeFrame(msg: Message): Buffer[] {
  let att: Uint8Array | null = null;
  let m: Message = msg;
  if (msg[0] !== EVENT) {
    const o = msg[3] as Record<string, unknown> | null;
    if (o && typeof o === 'object' && o.data instanceof Uint8Array && o.data.length >= ATTACH_MIN) {
      att = o.data;
      m = [msg[0], msg[1], msg[2], { ...o, data: null }] as Message;
    }
  }
  const body = packr.pack(m);
  const head = Buffer.allocUnsafe(8 + body.length);
  head.writeUInt32BE(4 + body.length + (att ? att.length : 0), 0);
  head.writeUInt32BE(body.length, 4);
  body.copy(head, 8);
  return att ? [head, Buffer.from(att.buffer, att.byteOffset, att.length)] : [head];
}

export class FrameError extends Error {}

/** Validates the outer shape of a decoded message; anything else is a protocol violation. */
export function checkMessage(m: unknown): Message {
  if (!Array.isArray(m)) throw new FrameError('frame is not an array');
  const t = m[0];
  if (t === REQ) {
    if (m.length !== 4 || !Number.isSafeInteger(m[1]) || typeof m[2] !== 'string') throw new FrameError('bad request frame');
    if (typeof m[3] !== 'object' || m[3] === null || Array.isArray(m[3])) throw new FrameError('request args are not a map');
    return m as Message;
  }
  if (t === REPLY) {
    if (m.length !== 4 || !Number.isSafeInteger(m[1])) throw new FrameError('bad reply frame');
    const e = m[2];
    if (e !== null && (typeof e !== 'object' || typeof (e as WireError).code !== 'string')) throw new FrameError('bad reply error');
    return m as Message;
  }
  if (t === EVENT) {
    if (m.length !== 3 || typeof m[1] !== 'string') throw new FrameError('bad event frame');
    return m as Message;
  }
  throw new FrameError(`unknown frame type ${String(t)}`);
}

/** Incremental decoder: push chunks, get whole messages. Throws FrameError on a bad stream. */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private need = -1;
  constructor(private readonly maxFrame = DEFAULT_MAX_FRAME) {}

  push(chunk: Buffer): Message[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const out: Message[] = [];
    for (;;) {
      if (this.need < 0) {
        if (this.buffered < 4) break;
        const len = this.take(4).readUInt32BE(0);
        if (len > this.maxFrame) throw new FrameError(`frame of ${len} bytes exceeds limit ${this.maxFrame}`);
        if (len <= 4) throw new FrameError('empty frame');
        this.need = len;
      }
      if (this.buffered < this.need) break;
      const frame = this.take(this.need);
      this.need = -1;
      const m = frame.readUInt32BE(0);
      if (m === 0 || m > frame.length - 4) throw new FrameError(`bad body length ${m} in a frame of ${frame.length}`);
      let decoded: unknown;
      try {
        decoded = packr.unpack(frame.subarray(4, 4 + m));
      } catch (e) {
        throw new FrameError(`undecodable frame: ${(e as Error).message}`);
      }
      const msg = checkMessage(decoded);
      if (frame.length > 4 + m) {
        const o = msg[0] === EVENT ? null : msg[3];
        if (!o || typeof o !== 'object' || Array.isArray(o)) throw new FrameError('attachment on a message without a map');
        (o as Record<string, unknown>).data = frame.subarray(4 + m);
      }
      out.push(msg);
    }
    return out;
  }

  private take(n: number): Buffer {
    const first = this.chunks[0];
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let off = 0;
      while (off < n) {
        const c = this.chunks[0];
        const k = Math.min(c.length, n - off);
        c.copy(out, off, 0, k);
        off += k;
        if (k === c.length) this.chunks.shift();
        else this.chunks[0] = c.subarray(k);
      }
    }
    this.buffered -= n;
    return out;
  }
}
