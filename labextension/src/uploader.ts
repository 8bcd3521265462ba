/**
 * TusUploader: the one upload model behind every front end (the file browser's Uploads
 * panel and the notebook widget). One `UploadItem` per file, driven by tus-js-client, with
 * one fingerprint (endpoint + destination folder + file), one retry rule, one message
 * catalogue (src/core.ts), the 413 fallback behind proxies, kept file handles, and the
 * unfinished uploads found again after a reload. No DOM: views listen to `changed`.
 *
 * States: queued → uploading ⇄ retrying → done; paused and failed wait for the user
 * (Resume or Cancel); interrupted is an upload found in the browser's storage after a
 * reload. Network errors never end an upload: they are retried with a capped exponential
 * backoff (reset after every chunk that lands), and while the browser is offline the
 * uploader waits for it to come back. Only a refusal that retrying cannot fix (name taken,
 * no permission, too big, gone) ends one, in plain words.
 */
import { ISignal, Signal } from '@lumino/signaling';
import {
  DetailedError,
  HttpRequest,
  HttpResponse,
  HttpStack,
  PreviousUpload,
  Upload,
  UploadOptions,
  UrlStorage,
  defaultOptions
} from 'tus-js-client';

import {
  FailureKind,
  IStatusSource,
  IUploadSettings,
  LANDED_PATH_HEADER,
  RateMeter,
  UploadState,
  bodySize,
  buildMetadata,
  classifyFailure,
  failureMessage,
  fingerprint,
  formatBytes,
  formatPercent,
  fractionOf,
  chunkAfter413,
  joinPath,
  parseFingerprint,
  parseLandedPath,
  retryDelay,
  retryReason,
  serverMessage,
  serverChunkLimit,
  shouldRetry
} from './core';
import { IFileHandle, deleteHandle, fileFromHandle, getHandle, putHandle } from './handles';
import {
  CHANNEL_NAME,
  IChannel,
  IChunkMemory,
  IRemoteStatus,
  ITabs,
  StorageChunkMemory,
  TabMessage,
  browserTabs,
  isTabMessage
} from './shared';

export type { UploadState } from './core';

/** Whether the browser is online, and a way to wait until it is. */
export interface IConnectivity {
  isOnline(): boolean;
  /** Call `callback` once when the browser comes back online; returns a canceller. */
  whenOnline(callback: () => void): () => void;
}

/** `navigator.onLine` and the window's `online` event. */
export const browserConnectivity: IConnectivity = {
  isOnline: () => typeof navigator === 'undefined' || navigator.onLine !== false,
  whenOnline: callback => {
    if (typeof window === 'undefined') {
      return () => undefined;
    }
    const listener = () => callback();
    window.addEventListener('online', listener, { once: true });
    return () => window.removeEventListener('online', listener);
  }
};

/** The file reader tus-js-client uses (its `fileReader` option). */
export type TusFileReader = NonNullable<UploadOptions['fileReader']>;

export interface IUploaderOptions {
  /** Absolute URL of the creation endpoint. */
  endpoint: string;
  /** Fresh authentication headers for every request. */
  headers: () => Record<string, string>;
  settings: () => IUploadSettings;
  /** Ask whether to replace an existing file (the item is `queued` meanwhile). */
  confirmOverwrite: (name: string, folder: string, item: UploadItem) => Promise<boolean>;
  /** Whether `folder/name` exists already (checked before creating; optional: without
   * it, the server's 409 at creation leads to the same question). */
  exists?: (path: string) => Promise<boolean>;
  /** The names in a folder (instead of `exists`): listed once for the uploads to that
   * folder that start together (a drop of many files), not once per file. */
  listFolder?: (folder: string) => Promise<string[]>;
  /** A file landed. */
  landed?: (item: UploadItem) => void;
  /** Files landed in `folder`, and no other upload to it is under way: the moment to
   * refresh a listing once for a whole batch rather than once per file. */
  folderLanded?: (folder: string) => void;
  /** tus-js-client's HTTP stack (tests script server answers through it). */
  httpStack?: HttpStack;
  /** Where unfinished uploads' URLs are kept (default: localStorage). */
  urlStorage?: UrlStorage;
  fileReader?: TusFileReader;
  connectivity?: IConnectivity;
  /** Milliseconds without any progress or answer after which a request counts as lost. */
  stallTimeout?: number;
  /** Where the chunk size a proxy accepted is remembered (default: localStorage, per
   * endpoint, shared by every front end and tab of the browser). */
  chunkMemory?: IChunkMemory;
  /** Uploads sending at the same time (default 6, the connections a browser opens to
   * one server; the others wait their turn as `queued`), and three times as many of files
   * that go in one request each (a drop of hundreds of small files). */
  maxConcurrent?: number;
  /** Web Locks and BroadcastChannel (default: the browser's; null: no coordination). */
  tabs?: ITabs | null;
}

/** Headers that say an answer came from the tus server itself. */
const TUS_RESUMABLE = 'Tus-Resumable';

/** A HEAD answered by something other than the tus server, or refused: tus-js-client must
 * not take it as "gone" (it would forget the upload and start a new one). */
class UnusableAnswer extends Error {
  constructor(readonly response: HttpResponse) {
    super(`HEAD answered ${response.getStatus()}`);
  }
}

let nextId = 1;

export class UploadItem implements IStatusSource {
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
  /** Bytes the server said it holds (a chunk landed, or its HEAD), as far as known. */
  confirmed = 0;
  /** Bytes the server held when this session started or last resumed it. */
  resumedFrom = 0;
  /** Why it failed (state `failed`), in plain words. */
  error = '';
  note = '';
  /** Set when a proxy's 413 made the chunks smaller. */
  chunkNote = '';
  /** Why it waits to retry (state `retrying`). */
  retryReason = '';
  /** When the next try starts (Date.now() ms); null while a try is under way. */
  retryAt: number | null = null;
  /** Waiting for the browser to come back online. */
  offline = false;
  /** A question for the user (state `queued`), e.g. whether to overwrite. */
  question = '';
  /** Tries since the last chunk landed. */
  attempt = 0;
  /** The current try was started by the retry rule, not by the user. */
  automatic = false;
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
  /** The state of the upload in the uploader that drives it (state `elsewhere`). */
  remoteState = '';
  /** Let go of the lock that makes this uploader the upload's driver. */
  releaseLock?: () => void;
  /** Stop waiting for that lock (state `elsewhere`). */
  stopWaiting?: () => void;
  /** Another uploader drove this upload before this one took it over. */
  followed = false;
  /** Called when another uploader says this upload (state `elsewhere`) landed. */
  heard?: () => void;
  /** When this uploader began to look for the upload's driver (Date.now() ms): a "done"
   * about a landing well before then (LAST_WORD_MS) is of an earlier upload of the
   * same file. */
  since = Date.now();
  /** When it landed (Date.now() ms; 0 until then). */
  landedAt = 0;
  /** The uploads that started with this one (one drop, one pick, one folder). */
  batch?: UploadBatch;
  /** Another tab or front end follows this upload (it asked): tell it the progress. */
  watched = false;
  /** When the driver's status was last broadcast (ms). */
  broadcastAt = 0;
  /** Timers of the retry wait, the countdown and the stall watchdog. */
  timers: { retry?: any; tick?: any; stall?: any; online?: () => void } = {};

  get path(): string {
    return joinPath(this.folder, this.name);
  }

  get fraction(): number {
    return fractionOf(this);
  }

  get rate(): number {
    return this.state === 'uploading' ? this.meter.rate : 0;
  }

  get hasHandle(): boolean {
    return !!this.handle;
  }

  /** The id of the upload on the server (the last part of its URL). */
  get uploadId(): string | null {
    const url = this.uploadUrl;
    return url ? url.replace(/\/+$/, '').split('/').pop() || null : null;
  }

  /** Still going, or waiting for the user to resume it. */
  get active(): boolean {
    return ['queued', 'uploading', 'retrying', 'paused', 'failed', 'elsewhere'].includes(
      this.state
    );
  }
}

/**
 * Uploads that overlap in time (a drop or a pick of many files, a folder): one total for
 * a batch row ("120 of 200 files · 40%"). An upload joins the current batch while any of
 * that batch's uploads is still starting or sending; otherwise it starts a new one.
 */
export class UploadBatch {
  readonly id = nextBatchId++;
  readonly items: UploadItem[] = [];

  /** Files in the batch. */
  get files(): number {
    return this.items.length;
  }

  /** Files landed. */
  get done(): number {
    return this.items.filter(i => i.state === 'done').length;
  }

  /** Files that failed (waiting for Resume or Cancel). */
  get failed(): number {
    return this.items.filter(i => i.state === 'failed').length;
  }

  /** Files cancelled. */
  get cancelled(): number {
    return this.items.filter(i => i.state === 'cancelled').length;
  }

  /** Files not cancelled (what the total counts). */
  get counted(): number {
    return this.files - this.cancelled;
  }

  /**
   * The state of the whole, as a row shows it: uploading while a file is starting or
   * sending; else failed, or paused, when a file waits for the user; cancelled when
   * every file was; else done.
   */
  get state(): 'uploading' | 'failed' | 'paused' | 'cancelled' | 'done' {
    if (this.busy) {
      return 'uploading';
    }
    if (this.failed) {
      return 'failed';
    }
    if (this.items.some(i => i.state === 'paused')) {
      return 'paused';
    }
    return this.counted === 0 ? 'cancelled' : 'done';
  }

  /** Bytes of the files not cancelled. */
  get size(): number {
    return this.items.filter(i => i.state !== 'cancelled').reduce((n, i) => n + i.size, 0);
  }

  /** Bytes the server holds of them. */
  get sent(): number {
    return this.items
      .filter(i => i.state !== 'cancelled')
      .reduce((n, i) => n + (i.state === 'done' ? i.size : Math.min(i.sent, i.size)), 0);
  }

  /** Fraction of the bytes sent (1 when every file landed). */
  get fraction(): number {
    const size = this.size;
    return size > 0 ? Math.min(1, this.sent / size) : this.busy ? 0 : 1;
  }

  /** Some file of it is still starting or sending. */
  get busy(): boolean {
    return this.items.some(i => BUSY_STATES.includes(i.state));
  }

  /** "120 of 200 files · 40% · 1.2 MiB of 3.0 MiB", and the failures if any. */
  get summary(): string {
    if (this.counted === 0) {
      return `${this.files} files cancelled`;
    }
    const parts = [
      `${this.done} of ${this.counted} files`,
      formatPercent(this.fraction),
      `${formatBytes(this.sent)} of ${formatBytes(this.size)}`
    ];
    if (this.failed) {
      parts.push(`${this.failed} failed`);
    }
    return parts.join(' · ');
  }
}

const BUSY_STATES: readonly string[] = ['queued', 'uploading', 'retrying', 'elsewhere'];

/** How long a tab given an upload's lock waits to hear that it landed (ms) before it
 * takes the upload over: a driver that landed it says so at once; a closed one never. */
const LAST_WORD_MS = 1000;
let nextBatchId = 1;

export interface IUploadRequest {
  /** The File System Access handle the file came with (kept for one-click resume). */
  handle?: IFileHandle;
  /** Replace an existing file of the same name without asking. */
  overwrite?: boolean;
}

export class TusUploader {
  constructor(options: IUploaderOptions) {
    this._options = options;
    this._connectivity = options.connectivity ?? browserConnectivity;
    this._urlStorage = options.urlStorage ?? defaultOptions.urlStorage;
    this._httpStack = options.httpStack ?? defaultOptions.httpStack;
    this._uploadStack = notingBodies(this._httpStack, this._bodies);
    this._stallTimeout = options.stallTimeout ?? 60_000;
    this._changed.connect((_, item) => {
      if (item) {
        this._broadcast(item);
      }
      if (this._waiting.length) {
        this._pump();
      }
      this._settle();
    });
    this._chunkMemory = options.chunkMemory ?? new StorageChunkMemory();
    this._tabs = options.tabs === undefined ? browserTabs() : options.tabs;
    if (this._tabs) {
      try {
        this._channel = this._tabs.openChannel(CHANNEL_NAME);
        this._channel.onmessage = event => this._onTabMessage(event.data);
      } catch {
        this._channel = null;
      }
    }
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
   * The largest request body the server accepts (its `Jupyter-Tus-Max-Chunk-Size`, read
   * from the endpoint probe and from every answer), or null when it sets none: chunks are
   * never larger, so no body is sent only to be refused.
   */
  get serverChunkLimit(): number | null {
    return this._serverLimit;
  }

  /** Note the server's chunk limit (from `probeEndpoint`'s answer; null: none). */
  limitChunks(bytes: number | null): void {
    this._serverLimit = bytes !== null && bytes > 0 ? bytes : null;
  }

  /** The chunk size a proxy's 413 taught this uploader, or any other front end or tab
   * of this browser for the same endpoint, now or before a reload (null: none yet). */
  get learnedChunkSize(): number | null {
    let remembered: number | null = null;
    try {
      remembered = this._chunkMemory.get(this.endpoint);
    } catch {
      remembered = null;
    }
    const known = [this._learnedChunk, remembered].filter((n): n is number => n !== null);
    return known.length ? Math.min(...known) : null;
  }

  /**
   * Go on with an upload this page did not start (another browser, the widget, a script:
   * the server's list names it by `url`), with the same `file` picked again: its URL is
   * stored under the file's fingerprint, so `upload` resumes it from the server's offset.
   * Resolves as `upload` does.
   */
  async adopt(url: string, size: number | null, file: File, folder: string): Promise<boolean> {
    const fp = fingerprint(file, this.endpoint, folder);
    this._checkNotSending(fp, file.name, folder); // (before a stale URL is stored)
    await this._urlStorage.addUpload(fp, {
      // null: a length the upload deferred (creation-defer-length), said when it ends.
      size,
      metadata: { filename: file.name, path: folder },
      creationTime: new Date().toString(),
      // The list's URLs are path-only, under the server of the endpoint.
      uploadUrl: new URL(url, this.endpoint).href,
      parallelUploadUrls: null,
      urlStorageKey: ''
    });
    return this.upload(file, folder);
  }

  /** Refuse a second upload of a file this uploader is sending (or waiting to send). */
  private _checkNotSending(fp: string, name: string, folder: string): void {
    const sending = ['queued', 'uploading', 'retrying', 'paused', 'elsewhere'];
    if (this._items.some(i => i.fingerprint === fp && sending.includes(i.state))) {
      throw new Error(`"${name}" is already being uploaded to ${folder || 'the top folder'}`);
    }
  }

  /**
   * Upload `file` into `folder`; resolves true when it landed, false when the user
   * declined or cancelled it. A failure stays listed (resume or cancel it there), so the
   * promise only settles once the user has decided.
   */
  async upload(file: File, folder: string, request: IUploadRequest = {}): Promise<boolean> {
    const fp = fingerprint(file, this.endpoint, folder);
    this._checkNotSending(fp, file.name, folder);
    // An earlier entry for the same file becomes this upload.
    for (const old of this._items.filter(i => i.fingerprint === fp)) {
      if (old.state === 'failed' && old.upload) {
        // Picked again after a failure: this upload takes over (same server upload).
        await old.upload.abort(false);
        old.settle?.(false);
      }
      this._remove(old);
    }
    const item = new UploadItem(file.name, folder, file.size, fp, 'queued');
    if (!this._batch || !this._batch.busy) {
      this._batch = new UploadBatch();
    }
    item.batch = this._batch;
    this._batch.items.push(item);
    item.file = file;
    item.handle = request.handle;
    // Resolves when the file lands (true) or the user gives up on it (false).
    const done = new Promise<boolean>(resolve => {
      item.settle = resolve;
    });
    this._items.unshift(item);
    this._changed.emit(item);
    if (!request.overwrite && this._options.listFolder) {
      void this._listing(folder).catch(() => undefined); // asked for now, used below
    }

    // One driver per upload across tabs and front ends: while another holds the lock of
    // this fingerprint, show its progress and send nothing; take over when it lets go.
    if (!(await this._lead(item))) {
      if (!(await this._follow(item))) {
        return done; // landed or given up meanwhile
      }
    }
    if (item.state !== 'queued') {
      return done; // cancelled meanwhile
    }

    let previous: PreviousUpload[] = [];
    try {
      previous = await this._urlStorage.findUploadsByFingerprint(fp);
    } catch {
      previous = [];
    }
    if (item.state !== 'queued') {
      return done; // cancelled meanwhile
    }
    previous.sort((a, b) => (a.creationTime < b.creationTime ? 1 : -1));
    // An upload goes on as it was started (one upload or parallel parts, its length
    // known or deferred), whatever the settings say now.
    const upload = this._makeUpload(item, !!request.overwrite, previous[0]);
    item.upload = upload;
    if (previous.length) {
      upload.resumeFromPreviousUpload(previous[0]);
      item.uploadUrl = previous[0].uploadUrl;
      item.parallelUploadUrls = previous[0].parallelUploadUrls;
    } else if (!request.overwrite && (this._options.listFolder || this._options.exists)) {
      const taken = await this._taken(item);
      if (taken && item.followed && item.remoteState !== 'cancelled') {
        // Another tab drove this upload and let go with nothing left to resume: it landed.
        item.sent = item.size;
        this._finish(item, 'done');
        this._options.landed?.(item);
        return done;
      }
      if (taken && !(await this._ask(item))) {
        return done;
      }
      if (taken) {
        upload.options.metadata = buildMetadata(file, folder, true);
      }
    }
    if (item.state !== 'queued') {
      return done;
    }
    if (request.handle) {
      void putHandle(fp, request.handle);
    }
    // Its turn comes when fewer than `maxConcurrent` uploads are sending.
    this._waiting.push(item);
    this._pump();
    return done;
  }

  /** Start waiting uploads while slots are free. */
  private _pump(): void {
    if (this._pumping) {
      return;
    }
    this._pumping = true;
    try {
      // Files sent whole in one request (a drop of many small files) may have more in
      // flight: each is one short request, and the browser keeps the next ones ready
      // for its connections instead of waiting for this code between two of them.
      const limit = this._maxConcurrent();
      const sendingNow = this._items.filter(i => i.state === 'uploading' || i.state === 'retrying');
      let sending = sendingNow.length;
      let big = sendingNow.filter(i => !this._oneRequest(i)).length;
      let started = 0;
      while (this._waiting.length) {
        const item = this._waiting[0];
        if (item.state !== 'queued' || !this._items.includes(item)) {
          this._waiting.shift(); // cancelled while waiting
          continue;
        }
        this._fit(item); // (a limit learned while it waited may make it a chunked one)
        const small = this._oneRequest(item);
        if (sending >= limit * SMALL_FILES_FACTOR || (!small && big >= limit)) {
          break; // in the order they came
        }
        if (started === STARTS_PER_TASK) {
          // The rest in the next tasks: each start opens a request (in Chromium a look
          // at the file on disk), and eighteen at once make one long task for the page.
          if (this._pumpTimer === null) {
            this._pumpTimer = setTimeout(() => {
              this._pumpTimer = null;
              this._pump();
            }, 0);
          }
          break;
        }
        this._waiting.shift();
        this._start(item);
        started++;
        sending++;
        big += small ? 0 : 1;
      }
    } finally {
      this._pumping = false;
    }
  }

  pause(item: UploadItem): void {
    if ((item.state !== 'uploading' && item.state !== 'retrying') || !item.upload) {
      return;
    }
    this._stopTimers(item);
    item.state = 'paused';
    item.offline = false;
    item.retryAt = null;
    item.meter.reset();
    void item.upload.abort(false);
    this._changed.emit(item);
  }

  async resume(item: UploadItem, pickFile?: () => Promise<File | null>): Promise<void> {
    if ((item.state === 'paused' || item.state === 'failed') && item.upload) {
      this._start(item);
      return;
    }
    if (item.state === 'retrying') {
      this._stopTimers(item);
      this._retryNow(item); // "retry now" instead of waiting
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
    void this.upload(file, item.folder, { handle: item.handle }).catch(err => {
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
          Upload.terminate(url, {
            headers,
            httpStack: this._httpStack,
            retryDelays: [0, 1000]
          }).catch(err => console.warn('jupyter-tus: could not terminate', url, err))
        )
      );
      if (item.urlStorageKey) {
        await this._urlStorage.removeUpload(item.urlStorageKey).catch(() => undefined);
      }
      void deleteHandle(item.fingerprint);
      this._remove(item);
      return;
    }
    if (item.state === 'done' || item.state === 'cancelled') {
      this._remove(item);
      return;
    }
    if (item.state === 'elsewhere') {
      // Only this view gives up waiting: the tab that drives the upload goes on.
      item.stopWaiting?.();
      this._finish(item, 'cancelled');
      return;
    }
    const upload = item.upload;
    const started = item.state !== 'queued';
    this._stopTimers(item);
    item.state = 'cancelled';
    this._changed.emit(item);
    if (upload && started) {
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

  /** Stop every transfer without terminating it (a view goes away): all stay resumable. */
  dispose(): void {
    this._disposed = true;
    if (this._pumpTimer !== null) {
      clearTimeout(this._pumpTimer);
      this._pumpTimer = null;
    }
    for (const item of this._items) {
      this._stopTimers(item);
      if (['uploading', 'retrying'].includes(item.state) && item.upload) {
        item.state = 'paused';
        void item.upload.abort(false);
      }
      item.stopWaiting?.();
      item.heard?.(); // (a wait for the last word ends: _disposed says take nothing over)
      item.releaseLock?.();
      item.settle?.(false);
      item.settle = undefined;
    }
    this._waiting = [];
    if (this._settleTimer !== null) {
      clearTimeout(this._settleTimer);
      this._settleTimer = null;
    }
    if (this._channel) {
      this._channel.onmessage = null;
      this._channel.close();
      this._channel = null;
    }
    Signal.clearData(this);
  }

  /**
   * List the unfinished uploads this browser started (tus-js-client's URL storage) for
   * this endpoint, with the offset the server holds; forget those the server no longer
   * has. `accept` narrows the list (e.g. to one destination folder).
   */
  async restore(accept?: (entry: { folder: string; name: string }) => boolean): Promise<void> {
    let entries: PreviousUpload[] = [];
    try {
      entries = await this._urlStorage.findAllUploads();
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
      if (accept && !accept(parsed)) {
        continue;
      }
      if (this._items.some(i => i.fingerprint === fp)) {
        continue;
      }
      const since = Date.now();
      if (await this._drivenElsewhere(fp)) {
        const item = new UploadItem(
          parsed.name,
          parsed.folder,
          entry.size ?? parsed.size,
          fp,
          'elsewhere'
        );
        item.since = since;
        item.urlStorageKey = key;
        item.uploadUrl = entry.uploadUrl;
        item.parallelUploadUrls = entry.parallelUploadUrls;
        this._followRestored(item);
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
        await this._urlStorage.removeUpload(key).catch(() => undefined);
        void deleteHandle(fp);
        continue;
      }
      if (this._items.some(i => i.fingerprint === fp)) {
        continue; // picked again while we asked the server
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

  /**
   * The offset the server holds; null when the tus server says the upload is gone
   * (404/410 with Tus-Resumable); NaN when it cannot tell (offline, JupyterHub answering
   * for a stopped server): such an upload stays listed.
   */
  private async _headOffset(url: string): Promise<number | null> {
    try {
      const req = this._httpStack.createRequest('HEAD', url);
      req.setHeader('Tus-Resumable', '1.0.0');
      for (const [k, v] of Object.entries(this._options.headers())) {
        req.setHeader(k, v);
      }
      withCredentials(req);
      const res = await req.send(null);
      const status = res.getStatus();
      const fromTus = !!res.getHeader(TUS_RESUMABLE);
      if ((status === 404 || status === 410) && fromTus) {
        return null;
      }
      const offset = res.getHeader('Upload-Offset');
      return status >= 200 && status < 300 && fromTus && offset ? Number(offset) : NaN;
    } catch {
      return NaN;
    }
  }

  private async _forgetStored(fp: string): Promise<void> {
    try {
      const stored = await this._urlStorage.findUploadsByFingerprint(fp);
      for (const s of stored) {
        await this._urlStorage.removeUpload(s.urlStorageKey);
      }
    } catch {
      // nothing stored
    }
  }

  /** The chunk size new uploads start with: the setting, within what a proxy or the
   * server allows. */
  private _chunkSize(): number {
    return Math.min(
      this._options.settings().chunkSize,
      this.learnedChunkSize ?? Infinity,
      this._serverLimit ?? Infinity
    );
  }

  /** Uploads sent in chunks at the same time (see IUploaderOptions.maxConcurrent). */
  private _maxConcurrent(): number {
    return Math.max(1, this._options.maxConcurrent ?? 6);
  }

  /** Chunked uploads sending now, but `except`. */
  private _chunkedSending(except: UploadItem): number {
    return this._items.filter(
      i =>
        i !== except && (i.state === 'uploading' || i.state === 'retrying') && !this._oneRequest(i)
    ).length;
  }

  /**
   * Before an upload (re)starts: its chunks within what a proxy's 413 or the server
   * taught since it was made (while it waited its turn, or before a retry), so that no
   * upload of a drop pays for a refused body the first one already paid for.
   */
  private _fit(item: UploadItem): void {
    const limit = this._chunkSize();
    if ((item.upload?.options.chunkSize ?? 0) > limit) {
      this._setChunk(item, limit);
    }
  }

  /** Chunks of `bytes` for `item`; a file sent whole in its creation request that does
   * not fit any more is created empty and sent in chunks (resumable after a reload). */
  private _setChunk(item: UploadItem, bytes: number): void {
    const options = item.upload!.options;
    options.chunkSize = bytes;
    if (options.uploadDataDuringCreation && item.size > bytes) {
      options.uploadDataDuringCreation = false;
      options.storeFingerprintForResuming = true;
    }
  }

  /** Whether `item` goes in one request (its creation carries the whole file). */
  private _oneRequest(item: UploadItem): boolean {
    const options = item.upload?.options;
    if (options) {
      return !!options.uploadDataDuringCreation;
    }
    return this._options.settings().parallelUploads <= 1 && item.size <= this._chunkSize();
  }

  /**
   * The tus-js-client upload of `item`; `previous` is the stored upload it goes on with
   * (found by fingerprint, or adopted from the server's list): a single upload goes on as
   * one even when `parallelUploads` is set now (tus-js-client would create new parts and
   * leave it), parallel parts as parts, and a deferred length (size null) as deferred.
   */
  private _makeUpload(item: UploadItem, overwrite: boolean, previous?: PreviousUpload): Upload {
    const settings = this._options.settings();
    const file = item.file!;
    const endpoint = this.endpoint;
    const folder = item.folder;
    const chunkSize = this._chunkSize();
    const parts = previous
      ? Math.max(1, previous.parallelUploadUrls?.length ?? 0)
      : settings.parallelUploads;
    // The parts of a parallel upload get these callbacks too, with offsets of their own:
    // only the whole upload's progress (onProgress) counts then.
    const single = parts <= 1;
    const deferred = single && !!previous?.uploadUrl && previous.size === null;
    const options: UploadOptions = {
      endpoint,
      metadata: buildMetadata(file, folder, overwrite),
      chunkSize,
      parallelUploads: parts,
      uploadLengthDeferred: deferred,
      // A file that fits in one request goes in the creation request itself
      // (creation-with-upload): one request per small file.
      uploadDataDuringCreation: single && !deferred && file.size <= chunkSize,
      // The retry rule is ours (see _onError): tus-js-client's gives up after its last
      // delay and not at all while offline.
      retryDelays: null,
      // A file sent whole in its creation request has nothing to resume: its URL is
      // known only once every byte is there (no storage writes for each small file).
      storeFingerprintForResuming: !(single && file.size <= chunkSize),
      removeFingerprintOnSuccess: true,
      fingerprint: async (f: File) => fingerprint(f, endpoint, folder),
      httpStack: this._uploadStack,
      urlStorage: this._urlStorage,
      onBeforeRequest: req => {
        // Cookies (and so the XSRF token) may change during a long upload. (Not also in
        // `headers`: XHR would join both values into one invalid header.)
        for (const [k, v] of Object.entries(this._options.headers())) {
          req.setHeader(k, v);
        }
        withCredentials(req);
        this._watch(item);
      },
      onProgress: (sent: number) => {
        if (item.state !== 'uploading' && item.state !== 'retrying') {
          return;
        }
        this._watch(item);
        if (item.state === 'uploading') {
          item.sent = sent;
          item.meter.add(Date.now(), sent);
          this._changed.emit(item);
        }
      },
      onChunkComplete: (_chunk: number, accepted: number) => {
        if (single) {
          item.sent = accepted;
          item.confirmed = accepted;
        }
        // A chunk landed: the connection works, the next failure starts the backoff anew.
        item.attempt = 0;
      },
      onUploadUrlAvailable: () => {
        if (item.upload?.url) {
          item.uploadUrl = item.upload.url;
        }
        this._changed.emit(item);
      },
      onAfterResponse: (req, res) => {
        this._unwatch(item);
        const status = res.getStatus();
        const fromTus = !!res.getHeader(TUS_RESUMABLE);
        if (req.getMethod() === 'HEAD' && !(status >= 200 && status < 300)) {
          // tus-js-client forgets an upload whose HEAD is not 2xx and creates a new one:
          // right when the user resumes an upload the server no longer has (404/410 from
          // tus), wrong for JupyterHub or a proxy answering while the server is away, for a
          // refusal (403) that a new upload would only repeat, and for an automatic retry
          // (the upload was cancelled elsewhere or expired: the user decides).
          const gone = (status === 404 || status === 410) && fromTus;
          if (!gone || item.automatic) {
            throw new UnusableAnswer(res);
          }
        }
        item.landedPath = parseLandedPath(res.getHeader(LANDED_PATH_HEADER)) ?? item.landedPath;
        // Every answer says the server's chunk limit: the next chunk keeps to it.
        const limit = fromTus ? serverChunkLimit(name => res.getHeader(name)) : null;
        if (limit !== null) {
          this._serverLimit = limit;
          const upload = item.upload;
          // (After a 413, _shrinkChunks sizes the retry from the body that was refused.)
          if (
            single &&
            upload &&
            status !== 413 &&
            (upload.options.chunkSize ?? Infinity) > limit
          ) {
            upload.options.chunkSize = limit;
          }
        }
        if (status >= 200 && status < 300 && item.state === 'retrying') {
          item.state = 'uploading'; // the server answers again
          item.retryReason = '';
          this._changed.emit(item);
        }
        // A HEAD is how tus-js-client learns the server's offset when it resumes.
        if (single && req.getMethod() === 'HEAD' && status === 200) {
          const offset = Number(res.getHeader('Upload-Offset') ?? NaN);
          if (Number.isFinite(offset)) {
            item.sent = offset;
            item.confirmed = offset;
            item.resumedFrom = offset;
            item.meter.reset();
            item.note = offset > 0 ? `resumed at ${formatBytes(offset)}` : '';
          }
        }
      },
      onSuccess: () => {
        this._stopTimers(item);
        if (!item.active) {
          return;
        }
        item.sent = item.size;
        if (item.handle || item.upload?.options.storeFingerprintForResuming) {
          // (A file sent in one request kept nothing: no IndexedDB work per small file.)
          void deleteHandle(item.fingerprint);
        }
        this._finish(item, 'done');
        this._options.landed?.(item);
      },
      onError: err => void this._onError(item, err)
    };
    options.fileReader = this._options.fileReader ?? WHOLE_FILE_READER;
    return new Upload(file, options);
  }

  /** The failure behind a tus-js-client error, and the answer that caused it. */
  private _classify(
    item: UploadItem,
    err: Error | DetailedError
  ): {
    kind: FailureKind;
    status?: number;
    response?: HttpResponse;
    request?: HttpRequest;
    fromTus?: boolean;
  } {
    const d = err as DetailedError;
    const request = d.originalRequest ?? undefined;
    let response = d.originalResponse ?? undefined;
    if (!response && d.causingError instanceof UnusableAnswer) {
      response = d.causingError.response;
    }
    if (!request) {
      // Not a request that failed: reading the file did.
      return { kind: 'unreadable' };
    }
    const status = response?.getStatus();
    const fromTus = !!response?.getHeader(TUS_RESUMABLE);
    const withBody =
      request.getMethod() === 'PATCH' ||
      request.getHeader('Content-Type') === 'application/offset+octet-stream';
    const chunkLimit = response ? serverChunkLimit(name => response!.getHeader(name)) : null;
    if (status === 413 && withBody && !fromTus) {
      // A body refused by a proxy's body limit: not a file over the server's maximum.
      return { kind: 'too-large-chunk', status, response, request, fromTus };
    }
    if (status === 413 && withBody && chunkLimit !== null) {
      // The tus server says its chunk limit on every answer, its refusals too: only a
      // body over it was refused for its size. Otherwise the file is over max_size or
      // the quota (a creation), or the body went past the upload's length.
      const kind =
        this._refusedBody(item, request) > chunkLimit
          ? 'too-large-chunk'
          : request.getMethod() === 'POST'
            ? 'too-large-file'
            : 'refused';
      return { kind, status, response, request, fromTus };
    }
    const kind = classifyFailure(request.getMethod(), status, fromTus);
    return { kind, status, response, request, fromTus };
  }

  private async _onError(item: UploadItem, err: Error | DetailedError): Promise<void> {
    if (item.state !== 'uploading' && item.state !== 'retrying') {
      return; // paused or cancelled meanwhile
    }
    this._unwatch(item);
    const upload = item.upload!;
    if (upload.options.parallelUploads === undefined || upload.options.parallelUploads <= 1) {
      // The bytes of the failed request did not count: show what the server holds.
      item.sent = Math.min(item.sent, item.confirmed);
    }
    const failure = this._classify(item, err);
    const { kind } = failure;
    console.debug('jupyter-tus:', kind, item.path, err);
    if (kind === 'clash') {
      await upload.abort(false);
      if (await this._ask(item)) {
        upload.options.metadata = buildMetadata(item.file!, item.folder, true);
        this._start(item);
      }
      return;
    }
    if (
      kind === 'too-large-chunk' &&
      this._shrinkChunks(item, failure.request, !!failure.fromTus)
    ) {
      await upload.abort(false);
      if (!this._oneRequest(item) && this._chunkedSending(item) >= this._maxConcurrent()) {
        // Sent whole until now, in chunks from now on: it waits for a chunked upload's
        // turn (maxConcurrent of them), first in line.
        this._stopTimers(item);
        item.state = 'queued';
        item.meter.reset();
        this._waiting.unshift(item);
        this._changed.emit(item);
        return;
      }
      this._start(item, true);
      return;
    }
    if (shouldRetry(kind)) {
      void upload.abort(false); // parts of a parallel upload may still run
      this._scheduleRetry(item, retryReason(kind, failure.status));
      return;
    }
    this._fail(
      item,
      failureMessage(kind, {
        status: failure.status,
        detail: serverMessage(failure.response?.getBody()),
        folder: item.folder
      })
    );
    if (kind !== 'unreadable') {
      console.error('jupyter-tus: upload failed', item.path, err);
    }
  }

  /** The size of the body `request` carried (noted as it was sent; else what the
   * chunk setting made of it). */
  private _refusedBody(item: UploadItem, request?: HttpRequest): number {
    const noted = request ? this._bodies.get(request) : undefined;
    if (noted !== undefined) {
      return noted;
    }
    const current = item.upload?.options.chunkSize ?? Infinity;
    const offset =
      request?.getMethod() === 'POST'
        ? 0
        : Number(request?.getHeader('Upload-Offset') ?? item.sent);
    return bodySize(current, Number.isFinite(offset) ? offset : 0, item.size);
  }

  /** After a 413 to a body too large: a smaller chunk than the body that was refused (not
   * than the configured chunk size): the server's limit when the tus server refused it,
   * else `chunkAfter413` (a proxy's limit, remembered for the endpoint). */
  private _shrinkChunks(
    item: UploadItem,
    request: HttpRequest | undefined,
    fromTus: boolean
  ): boolean {
    const settings = this._options.settings();
    const refused = this._refusedBody(item, request);
    // The server's own limit (its 413 says it): chunks of that from now on; the server
    // says it on every answer, so there is nothing to remember here. (A proxy in front
    // of it may have a lower one: its 413 is a proxy's.)
    const limit = this._serverLimit;
    if (fromTus && limit !== null && limit < refused) {
      this._setChunk(item, limit);
      item.chunkNote = `chunks of ${formatBytes(limit)} (server limit)`;
      return true;
    }
    const next = chunkAfter413(refused, settings.minChunkSize);
    if (next === null) {
      return false;
    }
    if (!this._warned413) {
      this._warned413 = true;
      console.warn(
        `jupyter-tus: a proxy refused a ${refused} byte request with 413 (body too large); ` +
          `going on with ${next} byte chunks. Lower the "chunkSize" setting to avoid this.`
      );
    }
    // (Never over the server's limit either: `_fit` keeps the next try under it.)
    this._setChunk(item, next);
    // The next files start with what the proxy let through, in every front end and tab
    // of this browser, and after a reload.
    this._learnedChunk = Math.min(this._learnedChunk ?? Infinity, next);
    try {
      this._chunkMemory.set(this.endpoint, next);
    } catch (err) {
      console.debug('jupyter-tus: could not remember the chunk size', err);
    }
    item.chunkNote = `chunks of ${formatBytes(next)} (proxy limit)`;
    return true;
  }

  /** Wait (backoff, or until the browser is online), then try again from the server's offset. */
  private _scheduleRetry(item: UploadItem, reason: string): void {
    this._stopTimers(item);
    item.state = 'retrying';
    item.retryReason = reason;
    item.meter.reset();
    if (!this._connectivity.isOnline()) {
      item.offline = true;
      item.retryAt = null;
      item.timers.online = this._connectivity.whenOnline(() => this._retryNow(item));
      this._changed.emit(item);
      return;
    }
    item.offline = false;
    const delay = retryDelay(item.attempt, this._options.settings().retryDelays);
    item.attempt++;
    item.retryAt = Date.now() + delay;
    item.timers.retry = setTimeout(() => this._retryNow(item), delay);
    // The countdown ("retrying in 12s") moves every second.
    item.timers.tick = setInterval(() => this._changed.emit(item), 1000);
    this._changed.emit(item);
  }

  private _retryNow(item: UploadItem): void {
    this._stopTimers(item);
    if (item.state !== 'retrying') {
      return;
    }
    item.retryAt = null;
    if (!this._connectivity.isOnline()) {
      this._scheduleRetry(item, item.retryReason);
      return;
    }
    item.offline = false;
    this._changed.emit(item);
    void this._readable(item).then(ok => {
      if (item.state !== 'retrying') {
        return;
      }
      if (!ok) {
        this._fail(item, failureMessage('unreadable'));
        return;
      }
      item.automatic = true;
      this._startUpload(item);
      this._watch(item);
    });
  }

  /** Whether the file can still be read (a file changed on disk fails like a network
   * error in the browser; retrying it would go on forever). */
  private async _readable(item: UploadItem): Promise<boolean> {
    const file = item.file;
    if (!file || typeof file.slice !== 'function') {
      return true;
    }
    try {
      const head = file.slice(0, Math.min(1, file.size));
      if (typeof head.arrayBuffer === 'function') {
        await head.arrayBuffer();
      }
      return true;
    } catch {
      return false;
    }
  }

  /** Re-arm the stall watchdog: a request with no progress and no answer for this long is
   * given up and retried. */
  private _watch(item: UploadItem): void {
    if (item.timers.stall !== undefined) {
      clearTimeout(item.timers.stall);
    }
    item.timers.stall = setTimeout(() => {
      item.timers.stall = undefined;
      if (item.state === 'uploading' || item.state === 'retrying') {
        void item.upload?.abort(false);
        this._scheduleRetry(item, retryReason('stalled'));
      }
    }, this._stallTimeout);
  }

  private _unwatch(item: UploadItem): void {
    if (item.timers.stall !== undefined) {
      clearTimeout(item.timers.stall);
      item.timers.stall = undefined;
    }
  }

  private _stopTimers(item: UploadItem): void {
    const t = item.timers;
    if (t.retry !== undefined) {
      clearTimeout(t.retry);
    }
    if (t.tick !== undefined) {
      clearInterval(t.tick);
    }
    if (t.stall !== undefined) {
      clearTimeout(t.stall);
    }
    t.online?.();
    item.timers = {};
  }

  private async _ask(item: UploadItem): Promise<boolean> {
    item.state = 'queued';
    item.question = `${item.name} already exists: overwrite?`;
    this._changed.emit(item);
    let yes = false;
    try {
      yes = await this._options.confirmOverwrite(item.name, item.folder, item);
    } finally {
      item.question = '';
    }
    if (item.state !== 'queued') {
      return false; // cancelled meanwhile
    }
    if (!yes) {
      this._finish(item, 'cancelled');
    }
    return yes;
  }

  /** (Re)start sending: from the server's offset when the upload exists there. */
  private _start(item: UploadItem, keepAttempts = false): void {
    this._stopTimers(item);
    item.state = 'uploading';
    item.error = '';
    item.retryReason = '';
    item.retryAt = null;
    item.offline = false;
    if (!keepAttempts) {
      item.attempt = 0;
    }
    item.automatic = false;
    item.meter.reset();
    item.resumedFrom = item.sent;
    this._startUpload(item);
    this._changed.emit(item);
  }

  private _startUpload(item: UploadItem): void {
    const upload = item.upload!;
    this._fit(item);
    if (upload.options.parallelUploads && upload.options.parallelUploads > 1) {
      // tus-js-client resets its "aborted" flag for single uploads only; a parallel one
      // would otherwise swallow every later error.
      (upload as unknown as { _aborted: boolean })._aborted = false;
    }
    upload.start();
  }

  private _fail(item: UploadItem, message: string): void {
    this._stopTimers(item);
    item.state = 'failed';
    item.error = message;
    item.retryAt = null;
    item.offline = false;
    item.meter.reset();
    this._changed.emit(item);
  }

  /** Whether the item's name is taken in its folder (false when that cannot be told). */
  private async _taken(item: UploadItem): Promise<boolean> {
    const list = this._options.listFolder;
    try {
      if (!list) {
        return !!(await this._options.exists?.(item.path));
      }
      return (await this._listing(item.folder)).has(item.name);
    } catch {
      return false;
    }
  }

  /** The names in `folder`, listed once for the uploads starting there together. */
  private _listing(folder: string): Promise<Set<string>> {
    let listing = this._listings.get(folder);
    if (!listing) {
      listing = this._options.listFolder!(folder).then(names => new Set(names));
      this._listings.set(folder, listing);
      listing.catch(() => this._listings.delete(folder));
    }
    return listing;
  }

  /** Whether an upload to `folder` is starting or sending. */
  private _busy(folder: string): boolean {
    return this._items.some(
      i => i.folder === folder && ['queued', 'uploading', 'retrying'].includes(i.state)
    );
  }

  /** After a change: say once per batch that files landed in a folder, and forget the
   * listings of folders nothing is uploaded to any more (the next batch lists again). */
  private _settle(): void {
    for (const folder of [...this._listings.keys()]) {
      if (!this._busy(folder)) {
        this._listings.delete(folder);
      }
    }
    if (!this._landedIn.size || this._settleTimer !== null) {
      return;
    }
    // Once the uploads started in the same moment (one drop) have had their turn.
    this._settleTimer = setTimeout(() => {
      this._settleTimer = null;
      for (const folder of [...this._landedIn]) {
        if (!this._busy(folder)) {
          this._landedIn.delete(folder);
          this._options.folderLanded?.(folder);
        }
      }
    }, 0);
  }

  private _finish(item: UploadItem, state: 'done' | 'cancelled'): void {
    this._stopTimers(item);
    item.state = state;
    item.meter.reset();
    if (state === 'done') {
      item.landedAt = Date.now();
      this._landedIn.add(item.folder);
    }
    this._changed.emit(item);
    // Said to the other tabs before the lock goes: one waiting for it knows the outcome.
    item.releaseLock?.();
    item.settle?.(state === 'done');
    item.settle = undefined;
  }

  private _remove(item: UploadItem): void {
    item.stopWaiting?.();
    item.releaseLock?.();
    const i = this._items.indexOf(item);
    if (i >= 0) {
      this._items.splice(i, 1);
      this._changed.emit(null);
    }
  }

  /**
   * Try to become the driver of `item`'s upload: true when this uploader holds its lock
   * (kept until the upload ends or this uploader goes away), or when there is no
   * coordination; false when another tab or front end drives it.
   */
  private _lead(item: UploadItem): Promise<boolean> {
    const tabs = this._tabs;
    if (!tabs) {
      return Promise.resolve(true);
    }
    return new Promise<boolean>(resolve => {
      let answered = false;
      tabs.locks
        .request(item.fingerprint, { ifAvailable: true }, lock => {
          answered = true;
          if (!lock) {
            resolve(false);
            return undefined;
          }
          resolve(true);
          return this._holdLock(item);
        })
        .catch(err => {
          // No locks here (e.g. an opaque origin): drive it alone, as before.
          console.debug('jupyter-tus: no lock for', item.path, err);
          if (!answered) {
            resolve(true);
          }
        });
    });
  }

  /** Keep the lock (the promise the lock callback returns) until released. */
  private _holdLock(item: UploadItem): Promise<void> {
    return new Promise<void>(release => {
      item.releaseLock = () => {
        item.releaseLock = undefined;
        release();
      };
    });
  }

  /**
   * Another uploader drives `item`'s upload: show it as running elsewhere, with the
   * driver's progress, until the lock is ours (true: take over, from the server's
   * offset), or it landed or the user gave up waiting (false).
   */
  private async _follow(item: UploadItem): Promise<boolean> {
    item.state = 'elsewhere';
    item.followed = true;
    this._changed.emit(item);
    this._post({ type: 'ask', fingerprint: item.fingerprint });
    const granted = await this._waitForLock(item);
    if (granted && item.state === 'elsewhere' && item.remoteState !== 'done') {
      await this._lastWord(item);
    }
    if (!granted || item.state !== 'elsewhere' || this._disposed) {
      return false;
    }
    if (item.remoteState === 'done') {
      item.sent = item.size;
      this._finish(item, 'done');
      this._options.landed?.(item);
      return false;
    }
    // The driver went away (tab closed or reloaded, or it cancelled): ours now. Others
    // that waited with this one asked the one gone: they hear from this one from now on.
    item.watched = true;
    item.state = 'queued';
    this._changed.emit(item);
    return true;
  }

  /**
   * Ask the other uploaders whether `item`'s upload landed, and wait for a "done" (at
   * most LAST_WORD_MS). The lock may be ours before the driver's "done", said just
   * before it let go, arrives: locks and channel messages take separate paths in a
   * browser. A driver that never said it (it landed before our first question came)
   * says it now; a closed one never does.
   */
  private _lastWord(item: UploadItem): Promise<void> {
    return new Promise<void>(resolve => {
      const timer = setTimeout(() => item.heard?.(), LAST_WORD_MS);
      item.heard = () => {
        clearTimeout(timer);
        item.heard = undefined;
        resolve();
      };
      this._post({ type: 'ask', fingerprint: item.fingerprint });
    });
  }

  /** Wait until the lock of `item`'s upload is ours (true), or waiting stops (false). */
  private _waitForLock(item: UploadItem): Promise<boolean> {
    const tabs = this._tabs!;
    const abort = new AbortController();
    return new Promise<boolean>(resolve => {
      item.stopWaiting = () => {
        item.stopWaiting = undefined;
        abort.abort();
        resolve(false);
      };
      tabs.locks
        .request(item.fingerprint, { signal: abort.signal }, lock => {
          if (!lock || item.state !== 'elsewhere') {
            resolve(false);
            return undefined; // let go at once: nothing more to do here
          }
          item.stopWaiting = undefined;
          resolve(true);
          return this._holdLock(item);
        })
        .catch(() => resolve(false));
    });
  }

  /** Whether another tab or front end drives the upload of fingerprint `fp` right now. */
  private async _drivenElsewhere(fp: string): Promise<boolean> {
    if (!this._tabs) {
      return false;
    }
    try {
      return (await this._tabs.locks.request(fp, { ifAvailable: true }, lock => !lock)) === true;
    } catch {
      return false;
    }
  }

  /** An upload found in storage that another tab drives: shown running there; once that
   * tab lets go, it is interrupted here (or done, when it landed). */
  private _followRestored(item: UploadItem): void {
    item.state = 'elsewhere';
    item.followed = true;
    this._items.push(item);
    this._changed.emit(item);
    this._post({ type: 'ask', fingerprint: item.fingerprint });
    void this._waitForLock(item).then(async granted => {
      if (granted && item.state === 'elsewhere' && item.remoteState !== 'done') {
        await this._lastWord(item);
      }
      item.releaseLock?.(); // an interrupted row drives nothing
      if (!granted || item.state !== 'elsewhere') {
        return;
      }
      if (item.remoteState === 'done') {
        item.sent = item.size;
        this._finish(item, 'done');
      } else if (item.remoteState === 'cancelled') {
        this._remove(item);
      } else {
        item.state = 'interrupted';
        this._changed.emit(item);
        void getHandle(item.fingerprint).then(handle => {
          item.handle = handle;
          this._changed.emit(item);
        });
      }
    });
  }

  /** What another uploader said on the channel. */
  private _onTabMessage(data: unknown): void {
    if (!isTabMessage(data)) {
      return;
    }
    const msg = data as TabMessage;
    if (msg.type === 'ask') {
      const driven = this._items.find(i => i.fingerprint === msg.fingerprint && i.releaseLock);
      if (driven) {
        driven.watched = true; // from now on its progress is told
        this._broadcast(driven, true);
        return;
      }
      // One that landed here (said again for a tab given the lock before this tab's
      // "done" arrived, or that asked once it was over).
      const landed = this._items.find(i => i.fingerprint === msg.fingerprint && i.state === 'done');
      if (landed) {
        this._post(remoteStatus(landed));
      }
      return;
    }
    for (const item of this._items) {
      if (item.fingerprint !== msg.fingerprint || item.state !== 'elsewhere') {
        continue;
      }
      if (msg.state === 'done' && Number(msg.landedAt) < item.since - LAST_WORD_MS) {
        // An earlier upload of the same file, landed before this one began. (One that
        // landed a moment before may be the one whose lock was not let go yet.)
        continue;
      }
      item.remoteState = msg.state;
      item.sent = Math.min(item.size, Math.max(0, Number(msg.sent) || 0));
      if (msg.state === 'done') {
        item.heard?.();
        item.landedPath = msg.landedPath;
        item.sent = item.size;
        item.stopWaiting?.();
        this._finish(item, 'done');
        this._options.landed?.(item);
        continue;
      }
      this._changed.emit(item);
    }
  }

  /** Tell the other tabs how an upload this uploader drives is going (progress at most
   * every 250 ms, every change of state at once). */
  private _broadcast(item: UploadItem, force = false): void {
    if (!this._channel || !item.releaseLock || !(item.watched || force)) {
      return; // (nobody asked: no message per small file of a big drop)
    }
    const now = Date.now();
    const status = remoteStatus(item);
    if (!force && item.state === item.remoteState && now - item.broadcastAt < 250) {
      return;
    }
    item.broadcastAt = now;
    item.remoteState = item.state; // what the others were told last
    this._post(status);
  }

  private _post(message: TabMessage): void {
    try {
      this._channel?.postMessage(message);
    } catch (err) {
      console.debug('jupyter-tus: could not tell the other tabs', err);
    }
  }

  private _options: IUploaderOptions;
  private _connectivity: IConnectivity;
  private _urlStorage: UrlStorage;
  private _httpStack: HttpStack;
  /** `_httpStack`, noting each request's body size in `_bodies` (what a 413 refused). */
  private _uploadStack: HttpStack;
  private _bodies = new WeakMap<HttpRequest, number>();
  private _stallTimeout: number;
  private _items: UploadItem[] = [];
  private _changed = new Signal<this, UploadItem | null>(this);
  private _warned413 = false;
  private _learnedChunk: number | null = null;
  private _serverLimit: number | null = null;
  private _pumpTimer: ReturnType<typeof setTimeout> | null = null;
  private _chunkMemory: IChunkMemory;
  private _tabs: ITabs | null;
  private _channel: IChannel | null = null;
  /** dispose() was called: nothing starts any more. */
  private _disposed = false;
  /** Listings of destination folders, shared by the uploads of one batch. */
  private _listings = new Map<string, Promise<Set<string>>>();
  /** Folders where files landed since `folderLanded` was last called for them. */
  private _landedIn = new Set<string>();
  private _settleTimer: ReturnType<typeof setTimeout> | null = null;
  /** The batch new uploads join while it is busy. */
  private _batch: UploadBatch | null = null;
  /** Uploads ready to start, in the order they came. */
  private _waiting: UploadItem[] = [];
  private _pumping = false;
}

/** Send cookies with XHR requests (same origin: they go anyway; harmless elsewhere). */
function withCredentials(req: HttpRequest): void {
  const xhr = req.getUnderlyingObject() as XMLHttpRequest | undefined;
  if (xhr && typeof xhr === 'object' && 'withCredentials' in xhr) {
    xhr.withCredentials = true;
  }
}

/** What the other tabs are told of an upload this uploader drives (or drove). */
function remoteStatus(item: UploadItem): IRemoteStatus {
  return {
    type: 'status',
    fingerprint: item.fingerprint,
    state: item.state,
    sent: item.sent,
    size: item.size,
    landedPath: item.landedPath,
    landedAt: item.landedAt
  };
}

/**
 * tus-js-client's browser file reader, except that a body of the whole file is the File
 * itself rather than `file.slice(0, size)`: in Chromium every slice of a file from disk
 * costs a synchronous look at the file (about a millisecond on the main thread), which a
 * drop of hundreds of small files (each sent whole in its creation request) pays for
 * nothing. Chunks of bigger files are slices as before.
 */
const WHOLE_FILE_READER: TusFileReader = {
  openFile: async (input: any) => {
    const file = input as Blob;
    if (typeof file?.slice !== 'function' || typeof file.size !== 'number') {
      throw new Error('jupyter-tus uploads only File and Blob objects');
    }
    return {
      size: file.size,
      slice: async (start: number, end: number) => ({
        value: start === 0 && end >= file.size ? file : file.slice(start, end),
        done: end >= file.size
      }),
      close: () => undefined
    };
  }
};

/**
 * `inner`, noting in `bodies` the size of each request's body as it is sent: after a
 * 413, the body that was refused (a part of a parallel upload, the rest of a file, a
 * whole small file) rather than a guess from the chunk setting.
 */
function notingBodies(inner: HttpStack, bodies: WeakMap<HttpRequest, number>): HttpStack {
  return {
    createRequest: (method: string, url: string) => {
      const req = inner.createRequest(method, url);
      const send = req.send.bind(req);
      req.send = (body: any) => {
        const size = body === null || body === undefined ? 0 : Number(body.size ?? body.length);
        bodies.set(req, Number.isFinite(size) ? size : 0);
        return send(body);
      };
      return req;
    },
    getName: () => inner.getName()
  };
}

/** Uploads started in one task of the page; the others in the next ones. */
const STARTS_PER_TASK = 2;

/** Uploads of one request each may be this many times `maxConcurrent` in flight. */
const SMALL_FILES_FACTOR = 3;

/** How the creation endpoint answered an OPTIONS request. */
export type EndpointCheck =
  | { ok: true; maxChunkSize: number | null }
  | { ok: false; status: number; reason: 'not-tus' | 'refused' }
  | { ok: false; status: 0; reason: 'unreachable'; error: string };

/** Whether `endpoint` answers like a tus server (the one probe of every front end). */
export async function probeEndpoint(
  endpoint: string,
  headers: Record<string, string>
): Promise<EndpointCheck> {
  let response: Response;
  try {
    response = await fetch(endpoint, {
      method: 'OPTIONS',
      headers: { ...headers, 'Tus-Resumable': '1.0.0' },
      credentials: 'same-origin'
    });
  } catch (err) {
    return { ok: false, status: 0, reason: 'unreachable', error: String(err) };
  }
  if (response.headers.get('Tus-Version')) {
    return { ok: true, maxChunkSize: serverChunkLimit(name => response.headers.get(name)) };
  }
  if (response.status === 401 || response.status === 403) {
    return { ok: false, status: response.status, reason: 'refused' };
  }
  return { ok: false, status: response.status, reason: 'not-tus' };
}
