/**
 * The world's pending events in (time, sequence) order: a binary heap. Cancelled timers stay in it,
 * marked dead, until their time comes (most timers, a request's deadline or a ping's, are cancelled:
 * they are the most of a run's queue), so a queue costs its events O(log n) each, not O(n).
 */
export interface Ev {
  t: number;
  seq: number;
  fn: () => void;
  dead: boolean;
  /** Events of one channel (bytes of one connection) keep their order, even when exploring. */
  ch?: object;
}

const before = (a: Ev, b: Ev) => a.t < b.t || (a.t === b.t && a.seq < b.seq);

export class EventQueue {
  private h: Ev[] = [];

  get size(): number {
    return this.h.length;
  }

  push(ev: Ev): void {
    const h = this.h;
    let i = h.length;
    h.push(ev);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(ev, h[p])) break;
      h[i] = h[p];
      i = p;
    }
    h[i] = ev;
  }

  /** The earliest event, taken out (dead ones too); undefined when none is left. */
  pop(): Ev | undefined {
    const h = this.h;
    const top = h[0];
    const last = h.pop();
    const n = h.length;
    if (n === 0 || last === undefined) return top;
    let i = 0;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n && before(h[c + 1], h[c])) c++;
      if (!before(h[c], last)) break;
      h[i] = h[c];
      i = c;
    }
    h[i] = last;
    return top;
  }

  /** The earliest live event, taken out; undefined when none is left. */
  popLive(): Ev | undefined {
    let ev = this.pop();
    while (ev?.dead) ev = this.pop();
    return ev;
  }
}
