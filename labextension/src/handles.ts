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
