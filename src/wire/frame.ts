/**
 * Frames: a 4-byte big-endian length L of the rest, a 4-byte length M of the msgpack body, the msgpack
 * body, then L-4-M bytes of raw attachment. Bulk data (the `data` field of a request's args or of a
 * reply's result) travels as the attachment, so it is never copied through msgpack. Messages:
 *   [0, id, op, args]          request
 *   [1, id, error|null, result] reply (error = { code, message })
 *   [2, kind, payload]          server event (the handshake challenge, later notifications)
 */
import { Packr } from 'msgpackr';

/** 5: mutual authentication (the client's nonce, the brick's proof) and the admin role in hello. */
export const PROTOCOL_VERSION = 5;
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

export type Message = [typeof REQ, number, string, Record<string, unknown>] | [typeof REPLY, number, WireError | null, unknown] | [typeof EVENT, string, unknown];

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
  throw new FrameError(`unknown frame type ${String(t).slice(0, 40)}`);
}

/**
 * Where a frame's attachment should land: called once the body is decoded, before the attachment's
 * bytes are copied. Returning a buffer of at least `length` bytes lets a reply's data go straight to
 * its reader's buffer (one copy from the socket); null means a fresh buffer.
 */
/** Attachment remainders smaller than this are read with what follows them, not on their own. */
const MIN_LANDING = 64 * 1024;

export type AttachTarget = (msg: Message, length: number) => Uint8Array | null;

/**
 * Incremental decoder: push chunks, get whole messages. Throws FrameError on a bad stream. A pushed
 * chunk is only read during the call (the transport may reuse its memory); every byte kept is copied
 * exactly once, into the body or the attachment of the frame it belongs to.
 */
export class FrameDecoder {
  private readonly head = Buffer.alloc(8);
  private headFill = 0;
  /** Bytes of the frame after its 4-byte length (0: reading a header). */
  private frameLen = 0;
  private body: Buffer | null = null;
  private bodyFill = 0;
  private msg: Message | null = null;
  private att: Uint8Array | null = null;
  private attFill = 0;
  constructor(
    private maxFrame = DEFAULT_MAX_FRAME,
    private readonly target: AttachTarget | null = null,
  ) {}

  /** Changes the size limit for frames whose header is read from now on (a brick: larger once authenticated). */
  setMaxFrame(n: number): void {
    this.maxFrame = n;
  }

  /**
   * Where the transport may read the next bytes directly: the rest of the attachment being received,
   * when enough of it is left to be worth a read of its own. Bytes read there and pushed as a view of
   * that very memory are not copied again.
   */
  landingZone(): Uint8Array | null {
    const att = this.att;
    if (att === null || this.msg === null || att.length - this.attFill < MIN_LANDING) return null;
    return att.subarray(this.attFill);
  }

  push(chunk: Uint8Array): Message[] {
    const out: Message[] = [];
    let pos = 0;
    const n = chunk.length;
    while (pos < n) {
      if (this.body === null && this.msg === null) {
        // Header: total length, then body length.
        const k = Math.min(8 - this.headFill, n - pos);
        this.head.set(chunk.subarray(pos, pos + k), this.headFill);
        this.headFill += k;
        pos += k;
        if (this.headFill >= 4 && this.frameLen === 0) {
          const len = this.head.readUInt32BE(0);
          if (len > this.maxFrame) throw new FrameError(`frame of ${len} bytes exceeds limit ${this.maxFrame}`);
          if (len <= 4) throw new FrameError('empty frame');
          this.frameLen = len;
        }
        if (this.headFill < 8) continue;
        const m = this.head.readUInt32BE(4);
        if (m === 0 || m > this.frameLen - 4) throw new FrameError(`bad body length ${m} in a frame of ${this.frameLen}`);
        this.body = Buffer.allocUnsafe(m);
        this.bodyFill = 0;
        continue;
      }
      if (this.msg === null) {
        const body = this.body as Buffer;
        const k = Math.min(body.length - this.bodyFill, n - pos);
        body.set(chunk.subarray(pos, pos + k), this.bodyFill);
        this.bodyFill += k;
        pos += k;
        if (this.bodyFill < body.length) continue;
        let decoded: unknown;
        try {
          decoded = packr.unpack(body);
        } catch (e) {
          throw new FrameError(`undecodable frame: ${String((e as Error).message).slice(0, 120)}`);
        }
        this.msg = checkMessage(decoded);
        const attLen = this.frameLen - 4 - body.length;
        if (attLen > 0) {
          const o = this.msg[0] === EVENT ? null : this.msg[3];
          if (!o || typeof o !== 'object' || Array.isArray(o)) throw new FrameError('attachment on a message without a map');
          const t = this.target?.(this.msg, attLen);
          this.att = t && t.length >= attLen ? t.subarray(0, attLen) : Buffer.allocUnsafe(attLen);
          this.attFill = 0;
        }
      } else if (this.att !== null) {
        const att = this.att;
        const k = Math.min(att.length - this.attFill, n - pos);
        const inPlace = chunk.buffer === att.buffer && chunk.byteOffset + pos === att.byteOffset + this.attFill;
        if (!inPlace) att.set(chunk.subarray(pos, pos + k), this.attFill);
        this.attFill += k;
        pos += k;
        if (this.attFill < att.length) continue;
        ((this.msg as Message)[3] as Record<string, unknown>).data = att instanceof Buffer ? att : Buffer.from(att.buffer, att.byteOffset, att.length);
      }
      if (this.att === null || this.attFill === this.att.length) {
        out.push(this.msg as Message);
        this.msg = null;
        this.body = null;
        this.att = null;
        this.headFill = 0;
        this.frameLen = 0;
      }
    }
    return out;
  }
}
