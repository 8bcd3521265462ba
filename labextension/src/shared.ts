/**
 * What the front ends and tabs of one browser share, beside tus-js-client's URL storage:
 *
 * - the chunk size a proxy let through after a 413, per endpoint (localStorage), so the
 *   next file (in the file browser, the notebook widget, after a reload) starts with it;
 * - who drives an upload: one Web Lock per upload fingerprint, held by the uploader that
 *   sends its bytes; another tab (or a widget) that gets the same file for the same
 *   folder waits for that lock and never sends a byte meanwhile;
 * - how far it is: the driver's progress on a BroadcastChannel, shown by the others.
 *
 * The browser APIs are behind small interfaces so jest can fake them.
 */

/** Where the chunk size a proxy accepted is remembered, per endpoint. */
export interface IChunkMemory {
  get(endpoint: string): number | null;
  set(endpoint: string, size: number): void;
}

/** The localStorage key of an endpoint's remembered chunk size. */
export function chunkMemoryKey(endpoint: string): string {
  return `jupyter-tus::chunk-size::${endpoint}`;
}

/** Parse a remembered chunk size: a positive integer, else null. */
export function parseChunkSize(text: string | null | undefined): number | null {
  if (!text) {
    return null;
  }
  const n = Number(text);
  return Number.isInteger(n) && n > 0 ? n : null;
}

/** A chunk memory over a Storage (localStorage in the browser; in memory elsewhere). */
export class StorageChunkMemory implements IChunkMemory {
  constructor(storage?: Pick<Storage, 'getItem' | 'setItem'> | null) {
    this._storage = storage === undefined ? defaultStorage() : storage;
  }

  get(endpoint: string): number | null {
    try {
      const stored = parseChunkSize(this._storage?.getItem(chunkMemoryKey(endpoint)));
      if (stored !== null) {
        return stored;
      }
    } catch {
      // storage disabled: the session's memory only
    }
    return this._session.get(endpoint) ?? null;
  }

  set(endpoint: string, size: number): void {
    const known = this.get(endpoint);
    const value = known === null ? size : Math.min(known, size);
    this._session.set(endpoint, value);
    try {
      this._storage?.setItem(chunkMemoryKey(endpoint), String(value));
    } catch {
      // storage full or disabled: the session's memory still has it
    }
  }

  private _storage: Pick<Storage, 'getItem' | 'setItem'> | null;
  private _session = new Map<string, number>();
}

function defaultStorage(): Storage | null {
  try {
    return typeof localStorage === 'undefined' ? null : localStorage;
  } catch {
    return null;
  }
}

/** The part of the Web Locks API (`navigator.locks`) the uploader uses. */
export interface ILocks {
  request(
    name: string,
    options: { ifAvailable?: boolean; signal?: AbortSignal },
    callback: (lock: unknown | null) => unknown
  ): Promise<unknown>;
}

/** The part of a BroadcastChannel the uploader uses. */
export interface IChannel {
  postMessage(message: unknown): void;
  onmessage: ((event: { data: unknown }) => void) | null;
  close(): void;
}

/** Who drives which upload, and its progress, across tabs. */
export interface ITabs {
  locks: ILocks;
  openChannel(name: string): IChannel;
}

/** The browser's Web Locks and BroadcastChannel, where both exist (else null: every
 * uploader drives its own uploads, as before). */
export function browserTabs(): ITabs | null {
  const locks = typeof navigator !== 'undefined' ? (navigator as any).locks : undefined;
  if (!locks || typeof BroadcastChannel === 'undefined') {
    return null;
  }
  return {
    locks: locks as ILocks,
    openChannel: name => new BroadcastChannel(name) as unknown as IChannel
  };
}

/** The channel every uploader of an origin talks on. */
export const CHANNEL_NAME = 'jupyter-tus';

/** What a driver says about an upload it drives. */
export interface IRemoteStatus {
  type: 'status';
  fingerprint: string;
  state: string;
  sent: number;
  size: number;
  landedPath: string | null;
  /** When it landed (Date.now() ms; 0 before): a tab where an earlier upload of the
   * same file landed answers with that one (absent from older versions). */
  landedAt?: number;
}

/** What a waiting uploader asks when it starts waiting (the driver answers with a status). */
export interface IStatusQuestion {
  type: 'ask';
  fingerprint: string;
}

export type TabMessage = IRemoteStatus | IStatusQuestion;

export function isTabMessage(data: unknown): data is TabMessage {
  const d = data as TabMessage | null;
  return (
    !!d &&
    typeof d === 'object' &&
    (d.type === 'status' || d.type === 'ask') &&
    typeof d.fingerprint === 'string'
  );
}
