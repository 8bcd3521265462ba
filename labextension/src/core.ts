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
  /** Milliseconds to wait before the first retries of a failed request; after the last,
   * the wait doubles up to MAX_RETRY_DELAY, and retries go on until the user cancels. */
  retryDelays: number[];
  /** Smallest chunk size the 413 fallback may go down to. */
  minChunkSize: number;
}

export const DEFAULT_SETTINGS: IUploadSettings = {
  chunkSize: 8 * MiB,
  parallelUploads: 1,
  sizeThreshold: 0,
  retryDelays: [0, 1000, 2000, 4000, 8000, 16000],
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
  | 'gone' // 404/410 from the tus server: the upload was terminated or expired
  | 'unauthorized' // 401: the login expired
  | 'forbidden' // 403: no permission for this destination
  | 'refused' // 400/412/415 and other 4xx: the request itself was refused
  | 'network' // no answer at all: the connection is lost
  | 'server-gone' // an answer without Tus-Resumable (JupyterHub, a proxy): the server is away
  | 'server-error' // 5xx: the server (or a proxy in front of it) failed
  | 'busy' // 409 offset mismatch, 423 locked, 429 too many requests
  | 'stalled' // no byte moved and no answer came for a long time
  | 'unreadable'; // the file cannot be read any more (moved, changed, deleted)

export function classifyFailure(
  method: string | undefined,
  status: number | undefined,
  hasTusHeader: boolean
): FailureKind {
  const m = (method || '').toUpperCase();
  const st = status || 0;
  if (st === 0) {
    return 'network';
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
  if (st === 502 || st === 503 || st === 504) {
    return hasTusHeader ? 'server-error' : 'server-gone';
  }
  if (st >= 500) {
    return 'server-error';
  }
  if (st === 409 || st === 423 || st === 429) {
    return 'busy';
  }
  if (st === 408) {
    return 'network'; // a proxy cut a request that took too long
  }
  if (st === 401) {
    return 'unauthorized';
  }
  if (st === 403) {
    return 'forbidden';
  }
  if (st >= 400) {
    return 'refused';
  }
  // 1xx/3xx where a tus answer was expected: something in between answered.
  return hasTusHeader ? 'refused' : 'server-gone';
}

/**
 * The one retry rule: whatever time may fix is retried for as long as the user does not
 * cancel; only a refusal that retrying cannot change ends an upload.
 */
export function shouldRetry(kind: FailureKind): boolean {
  return (
    kind === 'network' ||
    kind === 'server-gone' ||
    kind === 'server-error' ||
    kind === 'busy' ||
    kind === 'stalled'
  );
}

/** The longest wait between two tries. */
export const MAX_RETRY_DELAY = 30_000;

/**
 * Milliseconds to wait before retry number `attempt` (0 for the first): the configured
 * delays first, then doubling from the last of them, never more than `cap`. The attempt
 * count starts again at 0 after every chunk that lands.
 */
export function retryDelay(
  attempt: number,
  delays: readonly number[] = DEFAULT_SETTINGS.retryDelays,
  cap: number = MAX_RETRY_DELAY
): number {
  const n = Math.max(0, Math.floor(attempt));
  if (n < delays.length) {
    return Math.min(cap, delays[n]);
  }
  const last = delays.length ? delays[delays.length - 1] : 0;
  const base = Math.max(1000, last);
  return Math.min(cap, base * 2 ** (n - delays.length + 1));
}

/**
 * The body limit most proxies have: nginx's default `client_max_body_size` (1m), which
 * ingress-nginx's `proxy-body-size` and most hub deployments keep.
 */
export const COMMON_PROXY_LIMIT = MiB;

/**
 * Next chunk size after a proxy's 413 on a body of `body` bytes, or null when it cannot
 * go smaller than `min`. A body over 1 MiB goes straight to 1 MiB (the common limit: one
 * refused request behind nginx's defaults, not three); smaller ones are halved.
 */
export function chunkAfter413(body: number, min: number): number | null {
  if (body <= min) {
    return null;
  }
  const next = body > COMMON_PROXY_LIMIT ? COMMON_PROXY_LIMIT : Math.floor(body / 2);
  return Math.max(min, next);
}

/**
 * The largest request body the server accepts, from its answer's headers (`get` looks a
 * header up by name): `Jupyter-Tus-Max-Chunk-Size: <bytes>`, else the IETF draft's
 * `Upload-Limit: max-append-size=<bytes>`; null when it sets none (see docs/protocol.md).
 */
export function serverChunkLimit(get: (name: string) => string | null | undefined): number | null {
  const own = Number(get('Jupyter-Tus-Max-Chunk-Size') ?? NaN);
  if (Number.isInteger(own) && own > 0) {
    return own;
  }
  const dict = get('Upload-Limit') ?? '';
  const m = /(?:^|,)\s*max-append-size\s*=\s*(\d+)\s*(?:;|,|$)/.exec(dict);
  const n = m ? Number(m[1]) : NaN;
  return Number.isInteger(n) && n > 0 ? n : null;
}

/** Bytes a PATCH at `offset` carries: a chunk, or what is left of the file. */
export function bodySize(chunkSize: number, offset: number, size: number): number {
  return Math.max(0, Math.min(chunkSize, size - offset));
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

/** Sizes in binary units, everywhere the same way: "512 B", "1.5 KiB", "12 MiB". */
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
  if (i === 0) {
    return `${v} B`;
  }
  // One decimal below 10, none above; a value that rounds up to 1024 moves up a unit.
  const text = v.toFixed(v < 9.95 ? 1 : 0);
  if (text === '1024' && i < units.length - 1) {
    return `1.0 ${units[i + 1]}`;
  }
  return `${text} ${units[i]}`;
}

/** "29%": rounded down, so 100% means done. */
export function formatPercent(fraction: number): string {
  const f = Number.isFinite(fraction) ? Math.min(1, Math.max(0, fraction)) : 0;
  return `${Math.floor(f * 100 + 1e-9)}%`;
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

/** A folder as the rows name it: "data/raw/", the top folder "/". */
export function displayFolder(folder: string): string {
  return folder ? `${folder}/` : '/';
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
    return intended;
  }
  return `${landed} (the name was taken)`;
}

/** The server's own explanation in a JSON error body, if it sent one (never HTML). */
export function serverMessage(body: string | null | undefined): string {
  if (!body) {
    return '';
  }
  try {
    const parsed = JSON.parse(body);
    const text = parsed && (parsed.message || parsed.reason);
    return typeof text === 'string' ? text.trim().slice(0, 300) : '';
  } catch {
    return '';
  }
}

/**
 * Why an upload ended, in plain words: the message catalogue of every front end. Raw
 * client errors ("tus: failed to upload chunk at offset …") never reach the user; the
 * server's own JSON message is added where it explains the refusal.
 */
export function failureMessage(
  kind: FailureKind,
  info: { status?: number; detail?: string; folder?: string } = {}
): string {
  const detail = info.detail ? `: ${info.detail}` : '';
  const where = info.folder === undefined ? 'here' : `to ${displayFolder(info.folder)}`;
  switch (kind) {
    case 'clash':
      return `the name is taken in ${displayFolder(info.folder ?? '')}`;
    case 'too-large-file':
      return `the file is larger than the server accepts${detail}`;
    case 'too-large-chunk':
      return 'a proxy refuses even the smallest chunks (413); its body size limit must be raised';
    case 'gone':
      return 'the server no longer has this upload (cancelled elsewhere or expired); Resume starts it again';
    case 'unauthorized':
      return 'not logged in any more: reload the page, log in, then Resume';
    case 'forbidden':
      return `no permission to upload ${where}${detail}`;
    case 'refused':
      return `the server refused the upload${detail || (info.status ? ` (${info.status})` : '')}`;
    case 'unreadable':
      return 'the file cannot be read any more (moved, changed or deleted?); pick it again';
    default:
      return retryReason(kind, info.status);
  }
}

/** Why an upload is waiting to retry, in a few words. */
export function retryReason(kind: FailureKind, status?: number): string {
  switch (kind) {
    case 'server-gone':
      return 'server not reachable';
    case 'server-error':
      return `server error${status ? ` (${status})` : ''}`;
    case 'busy':
      return 'the server is busy';
    case 'stalled':
      return 'no answer from the server';
    default:
      return 'connection lost';
  }
}

/** Every state an upload goes through; `interrupted` is one found again after a reload. */
export type UploadState =
  | 'queued'
  | 'uploading'
  | 'retrying'
  | 'paused'
  | 'failed'
  | 'done'
  | 'cancelled'
  | 'interrupted'
  | 'elsewhere'; // another tab (or front end) drives it; this one shows its progress

/** What a status line is made of (an UploadItem is one). */
export interface IStatusSource {
  readonly state: UploadState;
  readonly sent: number;
  readonly size: number;
  readonly folder: string;
  readonly path: string;
  /** Bytes per second lately (0: unknown). */
  readonly rate: number;
  readonly error: string;
  readonly note: string;
  readonly chunkNote: string;
  readonly retryReason: string;
  /** When the next try starts (ms, like Date.now()), or null when it is under way. */
  readonly retryAt: number | null;
  readonly offline: boolean;
  readonly landedPath: string | null;
  readonly hasHandle: boolean;
  readonly question: string;
  /** State `elsewhere`: the state of the upload where it runs. */
  readonly remoteState?: string;
}

/** The fraction of the file the server holds (1 when done). */
export function fractionOf(s: { state: UploadState; sent: number; size: number }): number {
  if (s.size > 0) {
    return Math.min(1, s.sent / s.size);
  }
  return s.state === 'done' ? 1 : 0;
}

/**
 * The one status line of a row, in the same words in the file browser's panel and the
 * notebook widget:
 *   29% · 12 MiB of 40 MiB · 15 MiB/s · 2s left
 *   connection lost, retrying in 12s · 29% · 12 MiB of 40 MiB
 *   done · 40 MiB → data/x.csv
 */
export function statusLine(s: IStatusSource, now: number): string {
  const pct = formatPercent(fractionOf(s));
  const amount = `${formatBytes(s.sent)} of ${formatBytes(s.size)}`;
  const parts: string[] = [];
  switch (s.state) {
    case 'queued':
      parts.push(s.question || 'waiting to start');
      break;
    case 'uploading': {
      parts.push(pct, amount);
      if (s.rate > 0) {
        parts.push(formatRate(s.rate), `${formatDuration((s.size - s.sent) / s.rate)} left`);
      }
      break;
    }
    case 'retrying': {
      let wait: string;
      if (s.offline) {
        wait = 'offline, waiting for the network';
      } else if (s.retryAt === null) {
        wait = `${s.retryReason}, retrying now`;
      } else {
        const secs = Math.max(0, Math.ceil((s.retryAt - now) / 1000));
        wait = `${s.retryReason}, retrying in ${secs}s`;
      }
      parts.push(wait, pct, amount);
      break;
    }
    case 'paused':
      parts.push('paused', pct, amount);
      break;
    case 'failed':
      parts.push('failed', pct, s.error || 'unknown error');
      break;
    case 'done':
      parts.push(`done · ${formatBytes(s.size)} → ${describeLanding(s.path, s.landedPath)}`);
      break;
    case 'cancelled':
      parts.push('cancelled');
      break;
    case 'elsewhere': {
      const there = s.remoteState && s.remoteState !== 'uploading' ? ` (${s.remoteState})` : '';
      parts.push(`running in another tab${there}`, pct, amount);
      break;
    }
    case 'interrupted':
      parts.push(`interrupted at ${pct}`, `${amount} → ${displayFolder(s.folder)}`);
      parts.push(s.hasHandle ? 'click Resume' : 'Resume and pick the file again');
      if (s.error) {
        parts.push(s.error);
      }
      break;
  }
  if (s.state !== 'done' && s.state !== 'cancelled') {
    for (const note of [s.note, s.chunkNote]) {
      if (note) {
        parts.push(note);
      }
    }
  }
  return parts.join(' · ');
}
