/**
 * The tus upload queue behind the file browser: one `UploadItem` per file, driven by
 * tus-js-client, with pause/resume/cancel, overwrite prompts on a name clash, the 413
 * chunk-size fallback, and the list of unfinished uploads found again after a reload.
 */
import { ISignal, Signal } from '@lumino/signaling';
import { DetailedError, Upload, defaultOptions } from 'tus-js-client';

import {
  IUploadSettings,
  LANDED_PATH_HEADER,
  RateMeter,
  buildMetadata,
  classifyFailure,
  fingerprint,
  formatBytes,
  halveChunk,
  joinPath,
  parseFingerprint,
  parseLandedPath,
  shouldRetry
} from './core';
import { IFileHandle, deleteHandle, fileFromHandle, getHandle, putHandle } from './handles';

export type UploadState = 'uploading' | 'paused' | 'done' | 'error' | 'cancelled' | 'interrupted';

export interface IUploaderOptions {
  /** Absolute URL of the creation endpoint. */
  endpoint: string;
  /** Fresh authentication headers for every request. */
  headers: () => Record<string, string>;
  settings: () => IUploadSettings;
  /** Ask whether to replace an existing file. */
  confirmOverwrite: (name: string, folder: string) => Promise<boolean>;
  /** Whether `folder/name` exists already in the workspace. */
  exists: (path: string) => Promise<boolean>;
  /** A file landed in `folder`. */
  landed: (item: UploadItem) => void;
}

let nextId = 1;

export class UploadItem {
  constructor(name: string, folder: string, size: number, fp: string, state: UploadState) {
    this.name = name;
    this.folder = folder;
    this.size = size;
    this.fingerprint = fp;
    this.state = state;
  }

  readonly id = nextId++;
  readonly name: string;
  readonly folder: string;
  readonly size: number;
  readonly fingerprint: string;
  state: UploadState;
  /** Bytes the server holds (or has been sent, while a request is under way). */
  sent = 0;
  /** Bytes the server held when this session started or resumed it. */
  resumedFrom = 0;
  error = '';
  note = '';
  /** Set when a proxy's 413 made the chunks smaller. */
  chunkNote = '';
  meter = new RateMeter();
  handle?: IFileHandle;
  file?: File;
  upload?: Upload;
  /** Storage entry of an interrupted upload found after a reload. */
  urlStorageKey?: string;
  uploadUrl?: string | null;
  parallelUploadUrls?: string[] | null;
  settle?: (done: boolean) => void;
  /** A Resume click on an interrupted entry is under way. */
  resuming = false;
  /** Where the server says the file landed (it differs when the name was taken). */
  landedPath: string | null = null;

  get path(): string {
    return joinPath(this.folder, this.name);
  }

  get fraction(): number {
    return this.size > 0 ? Math.min(1, this.sent / this.size) : this.state === 'done' ? 1 : 0;
  }
}

export class TusUploader {
  constructor(options: IUploaderOptions) {
    this._options = options;
  }

  get changed(): ISignal<this, UploadItem | null> {
    return this._changed;
  }

  get items(): readonly UploadItem[] {
    return this._items;
  }

  get endpoint(): string {
    return this._options.endpoint;
  }

  /**
   * Upload `file` into `folder`; resolves true when it landed, false when the user
   * declined or cancelled it. A failure stays in the panel (resume or cancel there), so
   * the promise only settles once the user has decided.
   */
  async upload(file: File, folder: string, handle?: IFileHandle): Promise<boolean> {
    const fp = fingerprint(file, this.endpoint, folder);
    const item = new UploadItem(file.name, folder, file.size, fp, 'uploading');
    item.file = file;
    item.handle = handle;
    // An interrupted entry for the same file becomes this upload.
    for (const old of this._items.filter(i => i.fingerprint === fp && i !== item)) {
      if (old.state === 'uploading' || old.state === 'paused') {
        throw new Error(`"${file.name}" is already being uploaded to /${folder}`);
      }
      if (old.state === 'error' && old.upload) {
        // Picked again after a failure: this upload takes over (same server upload).
        await old.upload.abort(false);
        old.settle?.(false);
      }
      this._remove(old);
    }
    // Resolves when the file lands (true) or the user gives up on it (false); an error
    // stays in the panel, where the user can resume or cancel it.
    const done = new Promise<boolean>(resolve => {
      item.settle = resolve;
    });
    this._items.unshift(item);
    this._changed.emit(item);

    const upload = this._makeUpload(item, false);
    item.upload = upload;
    let previous: Awaited<ReturnType<Upload['findPreviousUploads']>> = [];
    try {
      previous = await upload.findPreviousUploads();
    } catch {
      previous = [];
    }
    if (previous.length) {
      previous.sort((a, b) => (a.creationTime < b.creationTime ? 1 : -1));
      upload.resumeFromPreviousUpload(previous[0]);
    } else if (await this._options.exists(item.path)) {
      if (!(await this._options.confirmOverwrite(item.name, folder))) {
        this._finish(item, 'cancelled');
        return done;
      }
      upload.options.metadata = buildMetadata(file, folder, true);
    }
    if (handle) {
      void putHandle(fp, handle);
    }
    this._start(item);
    return done;
  }

  pause(item: UploadItem): void {
    if (item.state !== 'uploading' || !item.upload) {
      return;
    }
    item.state = 'paused';
    item.meter.reset();
    void item.upload.abort(false);
    this._changed.emit(item);
  }

  async resume(item: UploadItem, pickFile?: () => Promise<File | null>): Promise<void> {
    if ((item.state === 'paused' || item.state === 'error') && item.upload) {
      item.error = '';
      this._start(item);
      return;
    }
    if (item.state !== 'interrupted' || item.resuming) {
      return;
    }
    item.resuming = true;
    try {
      await this._resumeInterrupted(item, pickFile);
    } finally {
      item.resuming = false;
    }
  }

  private async _resumeInterrupted(
    item: UploadItem,
    pickFile?: () => Promise<File | null>
  ): Promise<void> {
    // After a reload: the kept handle (Chromium) or a file the user picks again.
    let file: File | null = null;
    if (item.handle) {
      try {
        file = await fileFromHandle(item.handle);
      } catch (err) {
        console.info('jupyter-tus: the kept file handle cannot be read, pick the file', err);
        file = null;
      }
    }
    if (!file && pickFile) {
      file = await pickFile();
    }
    if (!file) {
      return;
    }
    const fp = fingerprint(file, this.endpoint, item.folder);
    if (fp !== item.fingerprint) {
      item.error = `"${file.name}" is not the file this upload started with (name, size or date differ)`;
      this._changed.emit(item);
      return;
    }
    void this.upload(file, item.folder, item.handle).catch(err => {
      item.error = String((err as Error)?.message ?? err);
      this._changed.emit(item);
    });
  }

  async cancel(item: UploadItem): Promise<void> {
    const headers = this._options.headers();
    if (item.state === 'interrupted') {
      const urls = [item.uploadUrl, ...(item.parallelUploadUrls ?? [])].filter(
        (u): u is string => !!u
      );
      await Promise.all(
        urls.map(url =>
          Upload.terminate(url, { headers, retryDelays: [0, 1000] }).catch(err =>
            console.warn('jupyter-tus: could not terminate', url, err)
          )
        )
      );
      if (item.urlStorageKey) {
        await defaultOptions.urlStorage.removeUpload(item.urlStorageKey);
      }
      void deleteHandle(item.fingerprint);
      this._remove(item);
      return;
    }
    if (item.state === 'done' || item.state === 'cancelled') {
      this._remove(item);
      return;
    }
    const upload = item.upload;
    item.state = 'cancelled';
    this._changed.emit(item);
    if (upload) {
      try {
        // Terminate on the server: the staged bytes go away.
        await upload.abort(true);
      } catch (err) {
        console.warn('jupyter-tus: could not terminate the upload', err);
      }
      // abort(true) forgets the URL only when it succeeded; forget it anyway.
      await this._forgetStored(item.fingerprint);
    }
    void deleteHandle(item.fingerprint);
    this._finish(item, 'cancelled');
  }

  /** Remove finished and cancelled entries from the list. */
  clearFinished(): void {
    for (const item of this._items.filter(i => i.state === 'done' || i.state === 'cancelled')) {
      this._remove(item);
    }
  }

  /**
   * List the unfinished uploads this browser started (tus-js-client's URL storage),
   * with the offset the server holds; forget those the server no longer has.
   */
  async restore(): Promise<void> {
    let entries: Awaited<ReturnType<typeof defaultOptions.urlStorage.findAllUploads>> = [];
    try {
      entries = await defaultOptions.urlStorage.findAllUploads();
    } catch {
      return;
    }
    for (const entry of entries) {
      const key = entry.urlStorageKey;
      const fp = key.slice(key.indexOf('::') + 2, key.lastIndexOf('::'));
      const parsed = parseFingerprint(fp);
      if (!parsed || parsed.endpoint !== this.endpoint) {
        continue;
      }
      if (this._items.some(i => i.fingerprint === fp)) {
        continue;
      }
      const urls = entry.parallelUploadUrls?.length
        ? entry.parallelUploadUrls
        : entry.uploadUrl
          ? [entry.uploadUrl]
          : [];
      let offset = 0;
      let alive = urls.length > 0;
      let unknown = false;
      for (const url of urls) {
        const o = await this._headOffset(url);
        if (o === null) {
          alive = false;
          break;
        }
        if (Number.isNaN(o)) {
          unknown = true;
        } else {
          offset += o;
        }
      }
      if (!alive) {
        await defaultOptions.urlStorage.removeUpload(key);
        void deleteHandle(fp);
        continue;
      }
      const item = new UploadItem(
        parsed.name,
        parsed.folder,
        entry.size ?? parsed.size,
        fp,
        'interrupted'
      );
      item.sent = offset;
      item.resumedFrom = offset;
      if (unknown) {
        item.note = 'the server cannot say how much it holds right now';
      }
      item.urlStorageKey = key;
      item.uploadUrl = entry.uploadUrl;
      item.parallelUploadUrls = entry.parallelUploadUrls;
      item.handle = await getHandle(fp);
      this._items.push(item);
      this._changed.emit(item);
    }
  }

  /** The offset the server holds, or null when the upload is gone (404/410). */
  /**
   * The offset the server holds; null when the tus server says the upload is gone
   * (404/410 with Tus-Resumable); NaN when it cannot tell (offline, JupyterHub answering
   * for a stopped server): such an upload stays listed.
   */
  private async _headOffset(url: string): Promise<number | null> {
    try {
      const res = await fetch(url, {
        method: 'HEAD',
        headers: { 'Tus-Resumable': '1.0.0', ...this._options.headers() },
        credentials: 'same-origin',
        cache: 'no-store'
      });
      const fromTus = res.headers.has('Tus-Resumable');
      if ((res.status === 404 || res.status === 410) && fromTus) {
        return null;
      }
      const offset = res.headers.get('Upload-Offset');
      return res.ok && fromTus && offset !== null ? Number(offset) : NaN;
    } catch {
      return NaN;
    }
  }

  private async _forgetStored(fp: string): Promise<void> {
    try {
      const stored = await defaultOptions.urlStorage.findUploadsByFingerprint(fp);
      for (const s of stored) {
        await defaultOptions.urlStorage.removeUpload(s.urlStorageKey);
      }
    } catch {
      // nothing stored
    }
  }

  private _makeUpload(item: UploadItem, overwrite: boolean): Upload {
    const settings = this._options.settings();
    const file = item.file!;
    const endpoint = this.endpoint;
    const folder = item.folder;
    return new Upload(file, {
      endpoint,
      metadata: buildMetadata(file, folder, overwrite),
      chunkSize: settings.chunkSize,
      parallelUploads: settings.parallelUploads,
      retryDelays: settings.retryDelays,
      storeFingerprintForResuming: true,
      removeFingerprintOnSuccess: true,
      fingerprint: async (f: File) => fingerprint(f, endpoint, folder),
      onBeforeRequest: req => {
        // Cookies (and so the XSRF token) may change during a long upload. (Not also in
        // `headers`: XHR would join both values into one invalid header.)
        for (const [k, v] of Object.entries(this._options.headers())) {
          req.setHeader(k, v);
        }
        const xhr = req.getUnderlyingObject() as XMLHttpRequest | undefined;
        if (xhr && 'withCredentials' in xhr) {
          xhr.withCredentials = true;
        }
      },
      onShouldRetry: (err: DetailedError) => {
        return shouldRetry(this._classify(err)) && navigator.onLine !== false;
      },
      onProgress: (sent: number) => {
        if (item.state !== 'uploading') {
          return;
        }
        item.sent = sent;
        item.meter.add(Date.now(), sent);
        this._changed.emit(item);
      },
      onChunkComplete: (_chunk: number, accepted: number) => {
        item.sent = accepted;
      },
      onUploadUrlAvailable: () => {
        item.uploadUrl = item.upload?.url;
      },
      onAfterResponse: (req, res) => {
        item.landedPath = parseLandedPath(res.getHeader(LANDED_PATH_HEADER)) ?? item.landedPath;
        // A HEAD is how tus-js-client learns the server's offset when it resumes.
        if (req.getMethod() === 'HEAD' && res.getStatus() === 200) {
          const offset = Number(res.getHeader('Upload-Offset') ?? NaN);
          if (Number.isFinite(offset)) {
            item.sent = offset;
            item.resumedFrom = offset;
            item.meter.reset();
            item.note = offset > 0 ? `resumed at ${formatBytes(offset)}` : '';
          }
        }
      },
      onSuccess: () => {
        item.sent = item.size;
        void deleteHandle(item.fingerprint);
        this._finish(item, 'done');
        this._options.landed(item);
      },
      onError: err => void this._onError(item, err)
    });
  }

  private _classify(err: Error | DetailedError) {
    const d = err as DetailedError;
    const req = d.originalRequest;
    const res = d.originalResponse;
    return classifyFailure(req?.getMethod(), res?.getStatus(), !!res?.getHeader('Tus-Resumable'));
  }

  private async _onError(item: UploadItem, err: Error | DetailedError): Promise<void> {
    if (item.state !== 'uploading') {
      return; // paused or cancelled meanwhile
    }
    const upload = item.upload!;
    const kind = this._classify(err);
    if (kind === 'clash') {
      await upload.abort(false);
      if (await this._options.confirmOverwrite(item.name, item.folder)) {
        upload.options.metadata = buildMetadata(item.file!, item.folder, true);
        this._start(item);
      } else {
        this._finish(item, 'cancelled');
      }
      return;
    }
    if (kind === 'too-large-chunk') {
      const settings = this._options.settings();
      const current = upload.options.chunkSize ?? Infinity;
      const next = halveChunk(current, settings.minChunkSize);
      if (next !== null) {
        if (!this._warned413) {
          this._warned413 = true;
          console.warn(
            `jupyter-tus: a proxy refused a ${current} byte request with 413 (body too large); ` +
              `going on with ${next} byte chunks. Lower the "chunkSize" setting to avoid this.`
          );
        }
        await upload.abort(false);
        upload.options.chunkSize = next;
        item.chunkNote = `chunks of ${Math.round(next / 1024)} KiB (proxy limit)`;
        this._start(item);
        return;
      }
    }
    item.state = 'error';
    item.error = this._describe(kind, err);
    console.error('jupyter-tus: upload failed', item.path, err);
    this._changed.emit(item);
  }

  private _describe(kind: string, err: Error | DetailedError): string {
    const res = (err as DetailedError).originalResponse;
    let detail = '';
    if (res) {
      try {
        const body = JSON.parse(res.getBody() || '{}');
        detail = body.message || body.reason || '';
      } catch {
        detail = (res.getBody() || '').slice(0, 200);
      }
    }
    switch (kind) {
      case 'too-large-file':
        return `the file is larger than the server accepts${detail ? `: ${detail}` : ''}`;
      case 'too-large-chunk':
        return 'a proxy refuses even the smallest chunks (413)';
      case 'gone':
        return 'the upload no longer exists on the server';
      case 'forbidden':
        return `refused by the server${detail ? `: ${detail}` : ` (${res?.getStatus()})`}`;
      case 'server-gone':
        return 'the Jupyter server is not reachable';
      default:
        return detail || err.message.split('\n')[0];
    }
  }

  private _start(item: UploadItem): void {
    item.state = 'uploading';
    item.error = '';
    item.meter.reset();
    item.resumedFrom = item.sent;
    item.upload!.start();
    this._changed.emit(item);
  }

  private _finish(item: UploadItem, state: 'done' | 'cancelled'): void {
    item.state = state;
    item.meter.reset();
    this._changed.emit(item);
    item.settle?.(state === 'done');
    item.settle = undefined;
  }

  private _remove(item: UploadItem): void {
    const i = this._items.indexOf(item);
    if (i >= 0) {
      this._items.splice(i, 1);
      this._changed.emit(null);
    }
  }

  private _options: IUploaderOptions;
  private _items: UploadItem[] = [];
  private _changed = new Signal<this, UploadItem | null>(this);
  private _warned413 = false;
}
