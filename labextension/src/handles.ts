/**
 * File System Access handles kept in IndexedDB (Chromium), keyed by upload fingerprint,
 * so that after a reload one click on "Resume" can read the file again without a picker.
 */

const DB_NAME = 'jupyter-tus';
const STORE = 'handles';

export interface IFileHandle {
  kind: 'file';
  name: string;
  getFile(): Promise<File>;
  queryPermission?(desc: { mode: 'read' }): Promise<PermissionState>;
  requestPermission?(desc: { mode: 'read' }): Promise<PermissionState>;
}

export function handlesSupported(): boolean {
  return (
    typeof indexedDB !== 'undefined' &&
    typeof (globalThis as any).FileSystemFileHandle !== 'undefined'
  );
}

function openDb(): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB_NAME, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function withStore<T>(
  mode: IDBTransactionMode,
  fn: (store: IDBObjectStore) => IDBRequest<T>
): Promise<T> {
  const db = await openDb();
  try {
    return await new Promise<T>((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const req = fn(tx.objectStore(STORE));
      tx.oncomplete = () => resolve(req.result);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  } finally {
    db.close();
  }
}

export async function putHandle(key: string, handle: IFileHandle): Promise<void> {
  if (!handlesSupported()) {
    return;
  }
  try {
    await withStore('readwrite', s => s.put(handle, key));
  } catch (err) {
    console.debug('jupyter-tus: could not keep the file handle', err);
  }
}

export async function getHandle(key: string): Promise<IFileHandle | undefined> {
  if (!handlesSupported()) {
    return undefined;
  }
  try {
    return (await withStore('readonly', s => s.get(key))) as IFileHandle | undefined;
  } catch {
    return undefined;
  }
}

export async function deleteHandle(key: string): Promise<void> {
  if (!handlesSupported()) {
    return;
  }
  try {
    await withStore('readwrite', s => s.delete(key));
  } catch {
    // nothing kept
  }
}

/** Read the file behind a kept handle, asking for read permission again if needed. */
export async function fileFromHandle(handle: IFileHandle): Promise<File> {
  if (handle.queryPermission && handle.requestPermission) {
    let state = await handle.queryPermission({ mode: 'read' });
    if (state !== 'granted') {
      state = await handle.requestPermission({ mode: 'read' });
    }
    if (state !== 'granted') {
      throw new Error('read permission refused');
    }
  }
  return handle.getFile();
}

/** File System Access handles waiting for the upload of their file. */
export class HandleRegistry {
  fromDrop(ev: DragEvent): void {
    const items = ev.dataTransfer?.items;
    if (!items) {
      return;
    }
    for (const item of Array.from(items)) {
      const get = (item as any).getAsFileSystemHandle;
      if (item.kind === 'file' && typeof get === 'function') {
        // Must be called during the event; resolves later.
        const p: Promise<IFileHandle | null> = get.call(item).catch(() => null);
        this._pending.push(p);
      }
    }
    window.setTimeout(() => (this._pending = []), 60_000);
  }

  add(file: File, handle: IFileHandle): void {
    this._known.set(file, handle);
  }

  /** The handle of `file`, if it was dropped or picked with one. */
  async take(file: File): Promise<IFileHandle | undefined> {
    const known = this._known.get(file);
    if (known) {
      this._known.delete(file);
      return known;
    }
    if (!this._pending.length) {
      return undefined;
    }
    const found = await Promise.all(this._pending);
    for (const h of found) {
      if (h && h.kind === 'file' && h.name === file.name) {
        try {
          const f = await h.getFile();
          if (f.size === file.size && f.lastModified === file.lastModified) {
            return h;
          }
        } catch {
          // unreadable: ignore
        }
      }
    }
    return undefined;
  }

  private _known = new WeakMap<File, IFileHandle>();
  private _pending: Promise<IFileHandle | null>[] = [];
}
