/**
 * Pure upload logic, free of JupyterLab imports so jest can test it directly:
 * settings, metadata, fingerprints, retry policy, chunk-size fallback behind proxies,
 * speed/ETA estimation and formatting.
 */

export const MiB = 1024 * 1024;

export interface IUploadSettings {
  /** Bytes per PATCH request. */
  chunkSize: number;
  /** Parallel PATCH streams per file (tus concatenation when > 1). */
  parallelUploads: number;
  /** Files smaller than this (bytes) keep JupyterLab's stock upload. */
  sizeThreshold: number;
  /** Milliseconds to wait before each retry of a failed request. */
  retryDelays: number[];
  /** Smallest chunk size the 413 fallback may go down to. */
  minChunkSize: number;
}

export const DEFAULT_SETTINGS: IUploadSettings = {
  chunkSize: 8 * MiB,
  parallelUploads: 1,
  sizeThreshold: 0,
  retryDelays: [0, 1000, 3000, 5000, 10000, 20000],
  minChunkSize: 64 * 1024
};

/** Merge user settings over the defaults, dropping nonsensical values. */
export function normalizeSettings(
  raw: Partial<IUploadSettings> | null | undefined
): IUploadSettings {
  const s = { ...DEFAULT_SETTINGS };
  if (!raw) {
    return s;
  }
  const posInt = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v > 0;
  if (posInt(raw.chunkSize)) {
    s.chunkSize = Math.floor(raw.chunkSize);
  }
  if (posInt(raw.parallelUploads)) {
    s.parallelUploads = Math.min(16, Math.floor(raw.parallelUploads));
  }
  if (typeof raw.sizeThreshold === 'number' && raw.sizeThreshold >= 0) {
    s.sizeThreshold = raw.sizeThreshold;
  }
  if (
    Array.isArray(raw.retryDelays) &&
    raw.retryDelays.every(d => typeof d === 'number' && d >= 0)
  ) {
    s.retryDelays = raw.retryDelays.slice();
  }
  if (posInt(raw.minChunkSize)) {
    s.minChunkSize = Math.floor(raw.minChunkSize);
  }
  s.minChunkSize = Math.min(s.minChunkSize, s.chunkSize);
  return s;
}

/** The destination folder as the tus server wants it: relative to root_dir, no drive. */
export function normalizeFolder(path: string | undefined | null): string {
  let p = path ?? '';
  const colon = p.indexOf(':');
  const slash = p.indexOf('/');
  if (colon > 0 && (slash < 0 || colon < slash)) {
    p = p.slice(colon + 1); // drop a "Drive:" prefix
  }
  return p
    .split('/')
    .filter(part => part !== '' && part !== '.')
    .join('/');
}

/** Join a folder and a file name the way the contents API spells paths. */
export function joinPath(folder: string, name: string): string {
  return folder ? `${folder}/${name}` : name;
}

/** Upload-Metadata for a file going into `folder`. */
export function buildMetadata(
  file: { name: string; type?: string },
  folder: string,
  overwrite = false
): Record<string, string> {
  const md: Record<string, string> = {
    filename: file.name,
    path: folder,
    filetype: file.type || 'application/octet-stream'
  };
  if (overwrite) {
    md.overwrite = 'true';
  }
  return md;
}

/**
 * Fingerprint used to find an unfinished upload of the same file again after a reload.
 * Includes the endpoint and destination folder, so the same file sent to two folders
 * (or two servers) resumes the right upload.
 */
export function fingerprint(
  file: { name: string; type?: string; size: number; lastModified?: number },
  endpoint: string,
  folder: string
): string {
  return [
    'jupyter-tus',
    endpoint,
    folder,
    file.name,
    file.type || '',
    file.size,
    file.lastModified ?? 0
  ].join('|');
}

/** Parse the `fingerprint` back into its destination folder and file name. */
export function parseFingerprint(
  fp: string
): { endpoint: string; folder: string; name: string; size: number; lastModified: number } | null {
  const parts = fp.split('|');
  if (parts.length < 7 || parts[0] !== 'jupyter-tus') {
    return null;
  }
  // Names may contain '|': endpoint and folder are in front, type/size/mtime at the end.
  const lastModified = Number(parts[parts.length - 1]);
  const size = Number(parts[parts.length - 2]);
  const name = parts.slice(3, parts.length - 3).join('|');
  return { endpoint: parts[1], folder: parts[2], name, size, lastModified };
}

/** Read a cookie by name from a `document.cookie` string. */
export function getCookie(cookies: string, name: string): string | undefined {
  for (const part of cookies.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) {
      continue;
    }
    if (part.slice(0, eq).trim() === name) {
      return decodeURIComponent(part.slice(eq + 1).trim());
    }
  }
  return undefined;
}

/** Headers that authenticate a request like the rest of the page does (the `_xsrf`
 * cookie, else `fallbackXsrf`, and the token when the page has one). */
export function authHeaders(
  cookies: string,
  token?: string,
  fallbackXsrf?: string
): Record<string, string> {
  const headers: Record<string, string> = {};
  const xsrf = getCookie(cookies, '_xsrf') || fallbackXsrf;
  if (xsrf) {
    headers['X-XSRFToken'] = xsrf;
  }
  if (token) {
    headers['Authorization'] = `token ${token}`;
  }
  return headers;
}

/** What went wrong with a request, from the status and method of a tus-js-client error. */
export type FailureKind =
  | 'clash' // 409 at creation: the name is taken
  | 'too-large-chunk' // 413 on PATCH: a proxy limits request bodies
  | 'too-large-file' // 413 at creation: over the server's Tus-Max-Size
  | 'gone' // 404/410: the upload was terminated or expired
  | 'forbidden' // 401/403/400 at creation: auth or destination refused
  | 'server-gone' // response without Tus-Resumable: the Jupyter server is not there
  | 'retry' // transient: network, 5xx, 409 offset mismatch, 423 locked
  | 'fatal';

export function classifyFailure(
  method: string | undefined,
  status: number | undefined,
  hasTusHeader: boolean
): FailureKind {
  const m = (method || '').toUpperCase();
  const st = status || 0;
  if (st === 0) {
    return 'retry';
  }
  if (st === 413) {
    return m === 'POST' ? 'too-large-file' : 'too-large-chunk';
  }
  if (m === 'POST' && st === 409) {
    return 'clash';
  }
  if (st === 404 || st === 410) {
    // Without Tus-Resumable the answer comes from something else (JupyterHub while the
    // user's server is stopped, a proxy): the upload may well still be there.
    return hasTusHeader ? 'gone' : 'server-gone';
  }
  if (st === 409 || st === 423 || st === 429 || st >= 500) {
    return 'retry';
  }
  if (st === 401 || st === 403 || st === 400 || st === 415 || st === 412) {
    return 'forbidden';
  }
  return 'fatal';
}

/** Whether tus-js-client should retry by itself (with its retry delays). */
export function shouldRetry(kind: FailureKind): boolean {
  return kind === 'retry' || kind === 'server-gone';
}

/** Next chunk size after a 413, or null when it cannot go smaller. */
export function halveChunk(current: number, min: number): number | null {
  if (!Number.isFinite(current)) {
    return 4 * MiB;
  }
  if (current <= min) {
    return null;
  }
  return Math.max(min, Math.floor(current / 2));
}

/**
 * Transfer rate over a sliding window of (time, bytes) samples, for speed and ETA.
 */
export class RateMeter {
  constructor(windowMs = 5000) {
    this._window = windowMs;
  }

  /** Record that `bytes` in total have been sent at time `now` (ms). */
  add(now: number, bytes: number): void {
    this._samples.push([now, bytes]);
    const cutoff = now - this._window;
    while (this._samples.length > 2 && this._samples[1][0] <= cutoff) {
      this._samples.shift();
    }
  }

  /** Forget the history (after pause/resume, where the gap is not transfer time). */
  reset(): void {
    this._samples = [];
  }

  /** Bytes per second, or 0 until two samples at least 200 ms apart exist. */
  get rate(): number {
    if (this._samples.length < 2) {
      return 0;
    }
    const [t0, b0] = this._samples[0];
    const [t1, b1] = this._samples[this._samples.length - 1];
    if (t1 - t0 < 200) {
      return 0;
    }
    return Math.max(0, ((b1 - b0) * 1000) / (t1 - t0));
  }

  /** Seconds left for `remaining` bytes, or null when unknown. */
  eta(remaining: number): number | null {
    const r = this.rate;
    return r > 0 ? remaining / r : null;
  }

  private _samples: [number, number][] = [];
  private _window: number;
}

export function formatBytes(n: number): string {
  if (!Number.isFinite(n) || n < 0) {
    return '–';
  }
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

export function formatRate(bytesPerSecond: number): string {
  return bytesPerSecond > 0 ? `${formatBytes(bytesPerSecond)}/s` : '–';
}

export function formatDuration(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds)) {
    return '–';
  }
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) {
    return `${s}s`;
  }
  const m = Math.floor(s / 60);
  if (m < 60) {
    return `${m}m ${s % 60}s`;
  }
  return `${Math.floor(m / 60)}h ${m % 60}m`;
}

/** The server's answer about a finished upload names where its file landed (not tus). */
export const LANDED_PATH_HEADER = 'Jupyter-Tus-Path';

/** The landed path from that header (percent-encoded UTF-8), or null if absent or garbled. */
export function parseLandedPath(header: string | null | undefined): string | null {
  if (!header) {
    return null;
  }
  try {
    return decodeURIComponent(header);
  } catch {
    return null;
  }
}

/** What a finished row says of its destination: the landed path, and why it differs. */
export function describeLanding(intended: string, landed: string | null): string {
  if (landed === null || landed === intended) {
    return `/${intended}`;
  }
  return `/${landed} (the name was taken)`;
}
