/**
 * Test doubles for what tabs of one browser share: Web Locks (exclusive, `ifAvailable`,
 * `signal`) and BroadcastChannel (delivered to the other channels of the same name, a
 * moment later, as a copy).
 */
import type { IChannel, ILocks, ITabs } from '../shared';

interface IWaiter {
  callback: (lock: unknown | null) => unknown;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

/** One origin's lock manager. */
export class FakeLocks implements ILocks {
  /** Names held right now. */
  readonly held = new Set<string>();
  private _queues = new Map<string, IWaiter[]>();

  request(
    name: string,
    options: { ifAvailable?: boolean; signal?: AbortSignal },
    callback: (lock: unknown | null) => unknown
  ): Promise<unknown> {
    if (this.held.has(name) && options.ifAvailable) {
      return Promise.resolve().then(() => callback(null));
    }
    return new Promise((resolve, reject) => {
      const waiter: IWaiter = { callback, resolve, reject };
      if (!this.held.has(name)) {
        this._grant(name, waiter);
        return;
      }
      const queue = this._queues.get(name) ?? [];
      queue.push(waiter);
      this._queues.set(name, queue);
      options.signal?.addEventListener('abort', () => {
        const q = this._queues.get(name) ?? [];
        const i = q.indexOf(waiter);
        if (i >= 0) {
          q.splice(i, 1);
          reject(new DOMException('aborted', 'AbortError'));
        }
      });
    });
  }

  private _grant(name: string, waiter: IWaiter): void {
    this.held.add(name);
    void Promise.resolve()
      .then(() => waiter.callback({ name, mode: 'exclusive' }))
      .then(
        value => waiter.resolve(value),
        err => waiter.reject(err)
      )
      .finally(() => {
        this.held.delete(name);
        const next = this._queues.get(name)?.shift();
        if (next) {
          this._grant(name, next);
        }
      });
  }
}

class FakeChannel implements IChannel {
  constructor(
    private _hub: FakeChannels,
    readonly name: string
  ) {}

  onmessage: ((event: { data: unknown }) => void) | null = null;
  closed = false;

  postMessage(message: unknown): void {
    this._hub.sent.push(message);
    const copy = JSON.parse(JSON.stringify(message));
    for (const other of this._hub.channels) {
      if (other !== this && other.name === this.name && !other.closed) {
        const deliver = () => other.onmessage?.({ data: copy });
        if (this._hub.delay > 0) {
          setTimeout(deliver, this._hub.delay); // in order, after a lock granted meanwhile
        } else {
          void Promise.resolve().then(deliver);
        }
      }
    }
  }

  close(): void {
    this.closed = true;
  }
}

/** The BroadcastChannels of one origin. */
export class FakeChannels {
  readonly channels: FakeChannel[] = [];
  /** Every message posted, in order. */
  readonly sent: unknown[] = [];
  /** Milliseconds a message takes (0: a moment). A browser delivers a channel's
   * messages and grants locks on separate paths: a lock let go after a message may be
   * granted before the message arrives, as with a delay here. */
  delay = 0;

  open(name: string): IChannel {
    const channel = new FakeChannel(this, name);
    this.channels.push(channel);
    return channel;
  }
}

/** Locks and channels of one browser, for each of its tabs. */
export function fakeTabs(locks: FakeLocks, channels: FakeChannels): ITabs {
  return { locks, openChannel: name => channels.open(name) };
}
