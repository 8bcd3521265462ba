/**
 * Test doubles for the uploader: an in-memory tus 1.0.0 server reached through
 * tus-js-client's `httpStack` option (with scripted answers: network errors, proxies,
 * hangs), URL storage, a file reader, files, and the browser's online state.
 */
import type {
  HttpRequest,
  HttpResponse,
  HttpStack,
  PreviousUpload,
  UrlStorage
} from 'tus-js-client';

import type { IConnectivity, TusFileReader } from '../uploader';

export const ENDPOINT = 'http://lab.test/api/tus/uploads';

/** What a scripted rule answers instead of the server: nothing at all (the connection
 * drops), never (the request hangs), or a response of its own. */
export type Answer =
  'network' | 'hang' | { status: number; headers?: Record<string, string>; body?: string };

export interface ISeenRequest {
  method: string;
  url: string;
  headers: Record<string, string>;
  /** Bytes in the body (PATCH). */
  bodySize: number;
  /** The status answered; 0 when the connection dropped; -1 while it hangs. */
  status: number;
}

interface IStoredUpload {
  /** null while the length is deferred (creation-defer-length). */
  length: number | null;
  offset: number;
  data: Uint8Array;
  metadata: Record<string, string>;
}

/** A body as the fake file reader hands it to the HTTP stack. */
interface IBody {
  size: number;
  bytes: Uint8Array;
}

class FakeResponse implements HttpResponse {
  constructor(
    private _status: number,
    private _headers: Record<string, string>,
    private _body = ''
  ) {}

  getStatus(): number {
    return this._status;
  }

  getHeader(name: string): string | undefined {
    const key = Object.keys(this._headers).find(k => k.toLowerCase() === name.toLowerCase());
    return key === undefined ? undefined : this._headers[key];
  }

  getBody(): string {
    return this._body;
  }

  getUnderlyingObject(): unknown {
    return undefined;
  }
}

class FakeRequest implements HttpRequest {
  constructor(
    private _server: FakeTusServer,
    private _method: string,
    private _url: string
  ) {}

  getMethod(): string {
    return this._method;
  }

  getURL(): string {
    return this._url;
  }

  setHeader(name: string, value: string): void {
    this.headers[name] = value;
  }

  getHeader(name: string): string | undefined {
    return this.headers[name];
  }

  setProgressHandler(handler: (bytesSent: number) => void): void {
    this._progress = handler;
  }

  async send(body: unknown = null): Promise<HttpResponse> {
    const b = body as IBody | null;
    const seen: ISeenRequest = {
      method: this._method,
      url: this._url,
      headers: { ...this.headers },
      bodySize: b ? b.size : 0,
      status: -1
    };
    this._server.requests.push(seen);
    // Each answer takes a little (fake) time, so that tests can act in between.
    await new Promise(resolve => setTimeout(resolve, this._server.latency));
    const answer = this._server.answer(this, seen);
    if (answer === 'hang') {
      return new Promise<HttpResponse>((_, reject) => {
        this._abort = () => reject(new Error('aborted'));
      });
    }
    if (answer === 'network') {
      seen.status = 0;
      // What XHR hands tus-js-client when the connection drops.
      throw { type: 'error', toString: () => '[object ProgressEvent]' };
    }
    if (b) {
      this._progress?.(b.size);
    }
    const res = answer ? this._server.respond(answer) : this._server.limited(this, b);
    seen.status = res.getStatus();
    return res;
  }

  async abort(): Promise<void> {
    this._abort?.();
  }

  getUnderlyingObject(): unknown {
    return undefined;
  }

  headers: Record<string, string> = {};
  private _progress?: (bytesSent: number) => void;
  private _abort?: () => void;
}

const TUS = { 'Tus-Resumable': '1.0.0' };

/** An in-memory tus server with a contents folder; `rules` answer in its place. */
export class FakeTusServer implements HttpStack {
  /** Every request, in order. */
  requests: ISeenRequest[] = [];
  /** Files that landed, by path. */
  files = new Map<string, Uint8Array>();
  uploads = new Map<string, IStoredUpload>();
  /** Answer for every request while set (e.g. 'network': the server is down). */
  down: Answer | null = null;
  /** Rules tried in order before the server; the first answer wins. */
  rules: ((req: ISeenRequest) => Answer | undefined)[] = [];
  /** Milliseconds each answer takes. */
  latency = 10;
  /** The server's `max_chunk_size`: said on every answer, larger bodies refused (413). */
  maxChunkSize: number | null = null;
  private _nextId = 1;

  createRequest(method: string, url: string): HttpRequest {
    return new FakeRequest(this, method, url);
  }

  getName(): string {
    return 'FakeTusServer';
  }

  answer(_req: HttpRequest, seen: ISeenRequest): Answer | undefined {
    if (this.down) {
      return this.down;
    }
    for (const rule of this.rules) {
      const a = rule(seen);
      if (a) {
        return a;
      }
    }
    return undefined;
  }

  /** A scripted answer as an HttpResponse. */
  respond(answer: Exclude<Answer, string>): HttpResponse {
    return new FakeResponse(answer.status, answer.headers ?? {}, answer.body ?? '');
  }

  /** `handle`, under `maxChunkSize` when set (as jupyter-tus answers). */
  limited(req: HttpRequest, body: IBody | null): HttpResponse {
    if (this.maxChunkSize === null) {
      return this.handle(req, body);
    }
    const limit = { 'Jupyter-Tus-Max-Chunk-Size': String(this.maxChunkSize) };
    if (body && body.size > this.maxChunkSize) {
      return new FakeResponse(413, { ...TUS, ...limit }, '{"message": "body too large"}');
    }
    const res = this.handle(req, body);
    const headers: Record<string, string> = { ...limit };
    for (const name of [
      'Tus-Resumable',
      'Location',
      'Upload-Offset',
      'Upload-Length',
      'Jupyter-Tus-Path'
    ]) {
      const v = res.getHeader(name);
      if (v !== undefined) {
        headers[name] = v;
      }
    }
    return new FakeResponse(res.getStatus(), headers, res.getBody());
  }

  handle(req: HttpRequest, body: IBody | null): HttpResponse {
    const method = req.getMethod();
    const url = req.getURL();
    const h = (name: string) => req.getHeader(name);
    if (method === 'POST' && url === ENDPOINT) {
      const metadata = decodeMetadata(h('Upload-Metadata') ?? '');
      const path = [metadata.path, metadata.filename].filter(Boolean).join('/');
      const overwrite = metadata.overwrite === 'true' || metadata.overwrite === '1';
      const concat = h('Upload-Concat') ?? '';
      if (!concat.startsWith('partial') && this.files.has(path) && !overwrite) {
        return json(409, `${path} exists already; set overwrite to replace it`);
      }
      const id = `up${this._nextId++}`;
      if (concat.startsWith('final;')) {
        // Concatenation: the finished partial uploads, in order, become the file.
        const parts = concat
          .slice('final;'.length)
          .trim()
          .split(' ')
          .map(u => this.uploads.get(u.slice(u.lastIndexOf('/') + 1)));
        if (parts.some(p => !p || p.offset !== p.length)) {
          return json(400, 'a partial upload is missing or unfinished');
        }
        const length = parts.reduce((n, p) => n + p!.length!, 0);
        const data = new Uint8Array(length);
        let at = 0;
        for (const p of parts) {
          data.set(p!.data, at);
          at += p!.length!;
        }
        this.uploads.set(id, { length, offset: length, data, metadata });
        this.files.set(path, data);
        return new FakeResponse(201, { ...TUS, Location: `/api/tus/uploads/${id}` });
      }
      // creation-defer-length: the length comes with a later PATCH.
      const length = h('Upload-Defer-Length') === '1' ? null : Number(h('Upload-Length'));
      const stored = { length, offset: 0, data: new Uint8Array(length ?? 0), metadata };
      this.uploads.set(id, stored);
      const headers: Record<string, string> = { ...TUS, Location: `/api/tus/uploads/${id}` };
      if (body && h('Content-Type') === 'application/offset+octet-stream') {
        // creation-with-upload: the body is the first bytes of the file.
        Object.assign(headers, this._write(stored, body));
      }
      return new FakeResponse(201, headers);
    }
    const id = url.slice(ENDPOINT.length + 1);
    const upload = this.uploads.get(id);
    if (!upload) {
      return new FakeResponse(404, { ...TUS });
    }
    if (method === 'HEAD') {
      return new FakeResponse(200, {
        ...TUS,
        'Upload-Offset': String(upload.offset),
        ...(upload.length === null
          ? { 'Upload-Defer-Length': '1' }
          : { 'Upload-Length': String(upload.length) }),
        'Cache-Control': 'no-store'
      });
    }
    if (method === 'DELETE') {
      this.uploads.delete(id);
      return new FakeResponse(204, { ...TUS });
    }
    if (method === 'PATCH') {
      if (Number(h('Upload-Offset')) !== upload.offset) {
        return json(409, 'offset mismatch');
      }
      if (upload.length === null && h('Upload-Length') !== undefined) {
        upload.length = Number(h('Upload-Length')); // the deferred length, declared
      }
      return new FakeResponse(204, { ...TUS, ...this._write(upload, body) });
    }
    return new FakeResponse(405, { ...TUS });
  }

  /** Append a body to an upload; the headers that say so (and where it landed). */
  private _write(upload: IStoredUpload, body: IBody | null): Record<string, string> {
    const bytes = body?.bytes ?? new Uint8Array(0);
    if (upload.offset + bytes.length > upload.data.length) {
      // (A deferred length: the buffer grows.)
      const grown = new Uint8Array(upload.offset + bytes.length);
      grown.set(upload.data.subarray(0, upload.offset));
      upload.data = grown;
    }
    upload.data.set(bytes, upload.offset);
    upload.offset += bytes.length;
    const headers: Record<string, string> = { 'Upload-Offset': String(upload.offset) };
    if (upload.offset === upload.length && upload.metadata.filename) {
      const md = upload.metadata;
      const path = [md.path, md.filename].filter(Boolean).join('/');
      this.files.set(path, upload.data);
      headers['Jupyter-Tus-Path'] = encodeURIComponent(path);
    }
    return headers;
  }

  /** The requests of one method, from index `since` on. */
  of(method: string, since = 0): ISeenRequest[] {
    return this.requests.slice(since).filter(r => r.method === method);
  }
}

function json(status: number, message: string): HttpResponse {
  return new FakeResponse(
    status,
    { ...TUS, 'Content-Type': 'application/json' },
    JSON.stringify({ message })
  );
}

function decodeMetadata(header: string): Record<string, string> {
  const md: Record<string, string> = {};
  for (const pair of header.split(',')) {
    const [key, value] = pair.trim().split(' ');
    if (key) {
      md[key] = value
        ? new TextDecoder().decode(Uint8Array.from(atob(value), c => c.charCodeAt(0)))
        : '';
    }
  }
  return md;
}

/** tus-js-client's URL storage, in memory (keys like the browser's: tus::<fp>::<n>). */
export class MemoryUrlStorage implements UrlStorage {
  entries = new Map<string, PreviousUpload>();
  private _n = 0;

  async findAllUploads(): Promise<PreviousUpload[]> {
    return [...this.entries.values()];
  }

  async findUploadsByFingerprint(fp: string): Promise<PreviousUpload[]> {
    return [...this.entries.entries()]
      .filter(([k]) => k.startsWith(`tus::${fp}::`))
      .map(([, v]) => v);
  }

  async removeUpload(key: string): Promise<void> {
    this.entries.delete(key);
  }

  async addUpload(fp: string, upload: PreviousUpload): Promise<string> {
    const key = `tus::${fp}::${this._n++}`;
    this.entries.set(key, { ...upload, urlStorageKey: key });
    return key;
  }
}

/** A File stand-in whose bytes the fake reader serves; `unreadable` makes reads fail. */
export interface IFakeFile {
  name: string;
  type: string;
  size: number;
  lastModified: number;
  bytes: Uint8Array;
  unreadable: boolean;
  slice(start: number, end: number): { size: number; arrayBuffer(): Promise<ArrayBuffer> };
}

export function fakeFile(name: string, size: number, lastModified = 1_700_000_000_000): File {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) {
    bytes[i] = (i * 31 + 7) & 0xff;
  }
  const file: IFakeFile = {
    name,
    type: 'application/octet-stream',
    size,
    lastModified,
    bytes,
    unreadable: false,
    slice(start: number, end: number) {
      return {
        size: Math.max(0, Math.min(end, size) - start),
        arrayBuffer: async () => {
          if (file.unreadable) {
            throw new Error('NotReadableError');
          }
          return bytes.slice(start, end).buffer;
        }
      };
    }
  };
  return file as unknown as File;
}

/** Serves a fake file's bytes to tus-js-client as bodies the fake server reads. */
export const fakeReader: TusFileReader = {
  openFile: async (input: unknown) => {
    const file = input as IFakeFile;
    return {
      size: file.size,
      slice: async (start: number, end: number) => {
        if (file.unreadable) {
          throw new Error('NotReadableError');
        }
        const stop = Math.min(end, file.size);
        const body: IBody = { size: stop - start, bytes: file.bytes.subarray(start, stop) };
        return { value: body, done: stop >= file.size };
      },
      close: () => undefined
    };
  }
};

/** The browser's online state, switched by the test. */
export class FakeConnectivity implements IConnectivity {
  online = true;
  private _waiting: (() => void)[] = [];

  isOnline(): boolean {
    return this.online;
  }

  whenOnline(callback: () => void): () => void {
    this._waiting.push(callback);
    return () => {
      this._waiting = this._waiting.filter(c => c !== callback);
    };
  }

  /** The `online` event. */
  goOnline(): void {
    this.online = true;
    const waiting = this._waiting;
    this._waiting = [];
    waiting.forEach(c => c());
  }

  get waiters(): number {
    return this._waiting.length;
  }
}
